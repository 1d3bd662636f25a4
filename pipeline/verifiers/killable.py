"""Run a function in a persistent child process that the parent can kill after a hard wall-clock limit.

Math-Verify's own timeouts use SIGALRM, which only works on a main thread and does not cover everything (printing a
huge parsed expression can run for minutes). The child runs the call on its own main thread; the parent waits at
most `timeout_s`, then kills the child and starts a fresh one for the next call. A crash in the child is reported
the same way, so no input can hang or take down the caller.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any


class CallTimedOut(Exception):
    pass


class ChildCrashed(Exception):
    pass


def _serve(conn: Connection, target: str) -> None:
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        conn.send(fn(*args))


class KillableWorker:
    """`call(*args)` runs `target` (``"module:function"``) in the child and returns its result."""

    def __init__(self, target: str, timeout_s: float):
        self._target = target
        self._timeout_s = timeout_s
        # spawn, not fork: callers are often multi-threaded (Ray actors), and fork copies their locks mid-use.
        self._ctx = mp.get_context("spawn")
        self._process: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._process = self._ctx.Process(target=_serve, args=(child, self._target), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def call(self, *args: Any) -> Any:
        if self._process is None or not self._process.is_alive():
            self._start()
        assert self._conn is not None
        self._conn.send(args)
        if not self._conn.poll(self._timeout_s):
            self.close()
            raise CallTimedOut(f"no answer within {self._timeout_s} s")
        try:
            return self._conn.recv()
        except (EOFError, ConnectionError) as err:
            self.close()
            raise ChildCrashed(str(err)) from err

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None
