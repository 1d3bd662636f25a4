"""Run a function in a persistent, warm child process that the parent kills after a hard wall-clock limit per call.

Math-Verify's own timeouts use SIGALRM, which only works on a main thread and does not cover everything (printing a
huge parsed expression can run for minutes). The child runs each call on its own main thread; the parent waits at
most `timeout_s` for the answer, then kills the child and starts a fresh one at once. A crash in the child is
reported the same way, so no input can hang or take down the caller.

The limit is the input's, never the worker's start-up: a child is started when the worker is created and right
after each kill, imports the target, runs its warm-up, and only then says it is ready. A call first waits for that
(under the separate, generous `start_timeout_s`) and starts its own clock after. A child that cannot get ready is a
broken worker, not a bad input: that raises `WorkerStartFailed`.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_READY = "ready"


class CallTimedOut(Exception):
    """The call ran past its wall-clock limit; the child was killed."""


class ChildCrashed(Exception):
    """The child died during the call."""


class WorkerStartFailed(RuntimeError):
    """The child could not get ready: a missing dependency, a failing warm-up, or no ready message in time."""


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _serve(conn: Connection, target: str, warm_up: str | None) -> None:
    try:
        fn = _resolve(target)
        if warm_up is not None:
            _resolve(warm_up)()
    except BaseException:  # noqa: BLE001 - whatever stops the start-up goes to the parent, which raises it
        conn.send(traceback.format_exc())
        return
    conn.send(_READY)
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        conn.send(fn(*args))


class KillableWorker:
    """`call(*args)` runs `target` (``"module:function"``) in the child and returns its result.

    `warm_up` (``"module:function"``, no arguments) runs once in each new child before it is ready: imports, caches,
    a first call, so that no call pays for them.
    """

    def __init__(self, target: str, timeout_s: float, warm_up: str | None = None, start_timeout_s: float = 120.0):
        self._target = target
        self._warm_up = warm_up
        self._timeout_s = timeout_s
        self._start_timeout_s = start_timeout_s
        # spawn, not fork: callers are often multi-threaded (Ray actors), and fork copies their locks mid-use.
        self._ctx = mp.get_context("spawn")
        self._process: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._start()

    def _start(self) -> None:
        """Starts a child without waiting for it: it gets ready while the caller does other work."""
        parent, child = self._ctx.Pipe()
        self._process = self._ctx.Process(target=_serve, args=(child, self._target, self._warm_up), daemon=True)
        self._process.start()
        child.close()
        self._conn, self._ready = parent, False

    def _restart(self) -> None:
        self.close()
        self._start()

    def _wait_until_ready(self) -> None:
        assert self._conn is not None and self._process is not None
        if not self._conn.poll(self._start_timeout_s):
            self.close()
            raise WorkerStartFailed(f"{self._target}: the child was not ready within {self._start_timeout_s} s")
        try:
            message = self._conn.recv()
        except (EOFError, ConnectionError):
            self._process.join()
            code = self._process.exitcode
            self.close()
            raise WorkerStartFailed(f"{self._target}: the child exited during start-up (exit code {code})") from None
        if message != _READY:
            self.close()
            raise WorkerStartFailed(f"{self._target}: the child failed to start:\n{message}")
        self._ready = True

    def call(self, *args: Any) -> Any:
        if self._process is None or not self._process.is_alive():  # closed, or died while idle
            self._restart()
        if not self._ready:
            self._wait_until_ready()
        assert self._conn is not None
        try:
            self._conn.send(args)
            if self._conn.poll(self._timeout_s):
                return self._conn.recv()
        except (EOFError, ConnectionError) as err:
            self._restart()
            raise ChildCrashed(str(err) or "the child exited") from err
        self._restart()
        raise CallTimedOut(f"no answer within {self._timeout_s} s")

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn, self._ready = None, None, False
