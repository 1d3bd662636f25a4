"""Run untrusted Python in isolation, without Docker, fast enough to run every test of every candidate.

A zygote process (spawned once, single-threaded, nothing heavy imported, in a network namespace of its own with no
interface up) forks one child per run. The child:
- enters new mount and PID namespaces: a private tmpfs over /tmp, /var/tmp and /dev/shm (so writes never reach the
  host and the disk cannot be filled), and one process tree that dies whole;
- closes every inherited file descriptor but stdin, stdout and stderr;
- sets rlimits on address space, CPU time, file size, open files and processes, then drops to uid/gid 65534
  (root ignores RLIMIT_NPROC, and cannot be kept from reading /root or signalling its parent);
- runs the code in the forked interpreter itself (no exec: a fork costs about a millisecond, a new interpreter
  about ten), with an empty environment.
The zygote enforces the wall-clock limit and the output cap, and kills the child's whole process group.
Namespaces and the uid switch need root; without it the sandbox refuses to start rather than run code unisolated.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import resource
import select
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

NOBODY = 65534
_CLONE_NEWNS, _CLONE_NEWNET, _CLONE_NEWPID = 0x00020000, 0x40000000, 0x20000000
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18


@dataclass(frozen=True)
class Limits:
    wall_s: float = 5.0
    cpu_s: int = 5
    memory_mb: int = 512
    output_bytes: int = 1 << 20
    processes: int = 32
    disk_mb: int = 64


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when killed
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_truncated: bool
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_truncated


class SandboxUnavailable(RuntimeError):
    pass


def _libc_call(name: str, *args) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _run_isolated(code: str, limits: Limits) -> None:
    """In the forked child; never returns."""
    os.setsid()
    _libc_call("unshare", _CLONE_NEWNS | _CLONE_NEWPID)
    init = os.fork()  # the first child after unshare is PID 1 of the new namespace: when it dies, all of it dies
    if init:
        _, status = os.waitpid(init, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _libc_call("mount", None, b"/", None, _MS_REC | _MS_PRIVATE, None)
    for target in (b"/tmp", b"/var/tmp", b"/dev/shm"):
        if os.path.isdir(target):
            _libc_call("mount", b"tmpfs", target, b"tmpfs", 0, f"size={limits.disk_mb}m,mode=1777".encode())
    workdir = "/tmp/run"
    os.mkdir(workdir)
    os.chown(workdir, NOBODY, NOBODY)
    os.closerange(3, 65536)
    for which, value in [
        (resource.RLIMIT_AS, limits.memory_mb << 20),
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_FSIZE, limits.disk_mb << 20),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ]:
        resource.setrlimit(which, (value, value))
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"})
    import sys
    import traceback

    # The zygote's own sys.std* point at descriptors closed above; bind them to the run's pipes.
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    status = 0
    try:
        exec(compile(code, "<solution>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # the program's own failure: report it like an interpreter would
        traceback.print_exc()
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _zygote_run(code: str, stdin: bytes, limits: Limits) -> RunResult:
    started = time.monotonic()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            _run_isolated(code, limits)
        except BaseException as err:  # isolation itself failed: say why on the run's stderr
            os.write(2, f"sandbox setup failed: {err!r}\n".encode())
        finally:
            os._exit(120)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    # Small inputs fit the pipe buffer; larger ones are written as the child reads.
    pending_in = memoryview(stdin)
    if not pending_in:
        os.close(in_w)
        in_w = -1
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = {out_r, err_r}
    total = 0
    timed_out = truncated = False
    deadline = started + limits.wall_s
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        writers = [in_w] if in_w >= 0 else []
        readable, writable, _ = select.select(list(open_fds), writers, [], remaining)
        if writable:
            try:
                written = os.write(in_w, pending_in[:65536])
                pending_in = pending_in[written:]
            except BrokenPipeError:
                pending_in = pending_in[:0]
            if not pending_in:
                os.close(in_w)
                in_w = -1
        for fd in readable:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                continue
            total += len(data)
            chunks[fd].append(data)
            if total > limits.output_bytes:
                truncated = True
                open_fds.clear()
    if timed_out or truncated:
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    for fd in (out_r, err_r, in_w):
        if fd >= 0:
            os.close(fd)
    exit_code = None if (timed_out or truncated) else os.waitstatus_to_exitcode(status)
    return RunResult(
        exit_code=exit_code,
        stdout=b"".join(chunks[out_r])[: limits.output_bytes],
        stderr=b"".join(chunks[err_r])[: limits.output_bytes],
        timed_out=timed_out,
        output_truncated=truncated,
        wall_s=time.monotonic() - started,
    )


# Imported once in the zygote, so every run finds them loaded: faster, and available even where the interpreter's
# own files are unreadable to uid 65534 (a Python installed under /root, as on this project's CI machines).
PRELOADED_MODULES = (
    "array base64 bisect collections copy dataclasses datetime decimal enum fractions functools hashlib heapq io "
    "itertools json math operator random re statistics string sys textwrap traceback typing unicodedata"
).split()


def _zygote(conn: Connection) -> None:
    import importlib

    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    # The zygote never needs the network: leaving it once here spares every run the cost of a new namespace,
    # and every run inherits a network namespace with nothing in it but a loopback that is down.
    _libc_call("unshare", _CLONE_NEWNET)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            code, stdin, limits = conn.recv()
        except EOFError:
            return
        conn.send(_zygote_run(code, stdin, limits))


def sandbox_available() -> bool:
    """Namespaces and the switch to uid 65534 need root."""
    return os.geteuid() == 0


class Sandbox:
    """`run(code, stdin)` executes Python source in isolation and returns what it printed and how it ended."""

    def __init__(self, limits: Limits = Limits()):
        if not sandbox_available():
            raise SandboxUnavailable("the sandbox needs root to create namespaces and switch to an unprivileged uid")
        self.limits = limits
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_zygote, args=(child,), daemon=True)
        self._process.start()
        child.close()

    @property
    def zygote_pid(self) -> int:
        return self._process.pid

    def run(self, code: str, stdin: bytes = b"", limits: Limits | None = None) -> RunResult:
        self._conn.send((code, stdin, limits or self.limits))
        return self._conn.recv()

    def close(self) -> None:
        self._conn.close()
        self._process.kill()
        self._process.join()
