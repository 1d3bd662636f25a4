"""An OpenAI-compatible chat-completions server on loopback for tests that script what an endpoint answers: a
reasoning API's message shape, throttling, errors, dropped connections, hangs. It keeps every request body."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a request gets: (HTTP status, JSON payload, extra headers), or None to drop the connection without a reply.
Reply = tuple[int, dict[str, Any], dict[str, str]] | None


def completion(body: dict[str, Any], messages: list[dict[str, Any]]) -> Reply:
    """A 200 chat completion with one choice per message, in order."""
    choices = [
        {"index": i, "finish_reason": "stop", "message": {"role": "assistant", **message}}
        for i, message in enumerate(messages)
    ]
    return 200, {
        "id": "scripted", "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices,
        "usage": {"prompt_tokens": 7, "completion_tokens": 20, "total_tokens": 27},
    }, {}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return status, {"error": {"message": message}}, headers or {}


class ChatServer:
    def __init__(self, respond: Callable[[dict[str, Any]], Reply]):
        self.bodies: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                reply = respond(body)
                if reply is None:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, payload, headers = reply
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
