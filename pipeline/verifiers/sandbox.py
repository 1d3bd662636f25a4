"""Run untrusted programs in isolation, without Docker, fast enough to run every test of every candidate.

It must never run a program that can see the host's files or processes, reach a network, keep a privilege or
outlive its limits. Where the kernel or the container refuses any step of the isolation, `Sandbox()` raises
`SandboxUnavailable` saying what was refused and how to allow it; it never runs code unisolated.

How, with Linux namespaces alone (no setuid helper, no daemon, no cgroups):
- `Sandbox()` starts a zygote: a fresh `python -I -S` (standard library only) that imports `PRELOADED_MODULES` and
  enters namespaces of its own: a user namespace, an empty network namespace (not even a loopback that is up), a
  PID namespace of which it is PID 1 (every run dies with it) and a mount namespace, in which it builds, once, the
  root that runs will see: a read-only tmpfs holding `/usr` and the Python installation (bound read-only),
  `/etc/ld.so.cache`, four devices, `/proc` and an empty `/tmp`. It pivots into that root, detaches the host's, and
  drops to an unprivileged uid: 65534 (nobody) on the host when started as root, the same user otherwise.
- Each run is cloned from the zygote straight into a new user namespace (so that `RLIMIT_NPROC` counts this run's
  processes, not those of every run on the node), a copy of the zygote's mount namespace (whose mounts the run
  cannot undo) and a new PID namespace of which it is PID 1. It maps itself to uid/gid 65534 of its namespace,
  keeps only stdin, stdout, stderr and the report pipe (fd 3, `REPORT_FD`), mounts its own `/proc` and a
  size-limited writable `/tmp` (the working directory is `/tmp/run`), drops every capability for good (bounding
  set, securebits, no_new_privs; and, where it has a /proc, no user namespace of its own), sets rlimits on memory,
  CPU time, file size, open files and processes, and runs the code with `exec()` in the cloned interpreter, with an
  environment of PATH, HOME and LANG alone: a fork costs about a millisecond, a new interpreter about ten.
- The zygote feeds stdin, collects stdout, stderr and the report, enforces the wall-clock limit and the output cap,
  and kills the run's PID 1, which takes every process of the run with it.
"""

from __future__ import annotations

# The zygote imports this module, and every run is a copy of the zygote: what it imports, each run copies (and
# threading or logging add after-fork work to each). Modules only `Sandbox` needs are imported where it needs them.
import contextlib
import ctypes
import fcntl
import functools
import gc
import importlib
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import traceback
import types
from dataclasses import dataclass

REPORT_FD = 3  # the program's fourth descriptor: a pipe for what a test harness reports, returned as `report`
WORKDIR = "/tmp/run"
PROGRAM_ID = 65534  # the program's uid and gid in its namespace; on the host too when the sandbox starts as root


@dataclass(frozen=True)
class Limits:
    wall_s: float = 5.0
    cpu_s: int = 5
    memory_mb: int = 512
    output_bytes: int = 1 << 20  # stdout, stderr and report together
    processes: int = 32  # of this run alone
    disk_mb: int = 64  # the writable /tmp


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when killed
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_truncated: bool
    wall_s: float
    report: bytes = b""  # what the program wrote to REPORT_FD

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_truncated


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot isolate programs here; the message says what is missing and how to grant it."""


# Imported once in the zygote, so every run finds them loaded: faster than importing them in each run.
PRELOADED_MODULES = (
    "array base64 bisect collections copy dataclasses datetime decimal enum fractions functools hashlib heapq io "
    "itertools json math operator random re statistics string sys textwrap traceback typing unicodedata"
).split()


@functools.cache
def isolation_problem() -> str | None:
    """Why the sandbox cannot isolate programs in this process's environment, or None when it can (probed once)."""
    try:
        Sandbox(Limits(wall_s=10.0)).close()
    except SandboxUnavailable as err:
        return str(err)
    return None


class Sandbox:
    """`run(code, stdin)` executes Python source in isolation and returns what it printed and how it ended."""

    def __init__(self, limits: Limits = Limits()):
        import subprocess

        self.limits = limits
        to_zygote, self._requests = os.pipe()
        self._replies, from_zygote = os.pipe()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = f"import sys; sys.path.insert(0, {root!r}); import {__name__} as s; del sys.path[0]; s._zygote_main()"
        # -I -S: none of the caller's environment, site-packages or working directory reaches the zygote's imports.
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", boot, str(to_zygote), str(from_zygote)],
            pass_fds=[to_zygote, from_zygote], stdin=subprocess.DEVNULL, cwd="/",
        )
        os.close(to_zygote)
        os.close(from_zygote)
        try:
            problem = self._receive()
            if problem is not None:
                raise SandboxUnavailable(problem)
            # Each run isolates itself, so the probe is a real run, not a look at the configuration.
            probe = self.run("import os\nprint(os.path.isdir('/proc/self'))", limits=Limits(wall_s=10.0))
            if not probe.ok:
                raise SandboxUnavailable(f"the sandbox's probe program failed: {probe}")
        except BaseException:
            self.close()
            raise
        self.proc_mounted = probe.stdout == b"True\n"
        if not self.proc_mounted:
            import logging

            logging.getLogger(__name__).warning(
                "sandboxed programs run without /proc, and may create user namespaces of their own: this container "
                "masks parts of its /proc (Docker: --security-opt systempaths=unconfined; Kubernetes: "
                "securityContext.procMount: Unmasked)")

    @property
    def zygote_pid(self) -> int:
        return self._process.pid

    def run(self, code: str, stdin: bytes = b"", limits: Limits | None = None) -> RunResult:
        """Raises `SandboxUnavailable` when the sandbox is broken (not when the code fails): the caller needs a new
        one."""
        try:
            _send(self._requests, (code, stdin, limits or self.limits))
        except BrokenPipeError:
            raise self._died() from None
        outcome = self._receive()
        if isinstance(outcome, str):  # the isolation of this run failed, and its code never ran
            raise SandboxUnavailable(outcome)
        return outcome

    def close(self) -> None:
        import subprocess

        os.close(self._requests)  # the zygote exits once it reads the end of its requests, and its parent with it
        os.close(self._replies)
        try:
            self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # a run in flight: the zygote dies with its parent, and the run with it
            self._process.kill()
            self._process.wait()

    def _receive(self):
        try:
            return _receive(self._replies)
        except EOFError:
            raise self._died() from None

    def _died(self) -> SandboxUnavailable:
        return SandboxUnavailable(f"the sandbox's zygote died (exit status {self._process.poll()})")


def _send(fd: int, message: object) -> None:
    data = pickle.dumps(message)
    view = memoryview(struct.pack("!Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int) -> object:
    size = struct.unpack("!Q", _read_exactly(fd, 8))[0]
    return pickle.loads(_read_exactly(fd, size))


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# ---- what the kernel refuses, and how to allow it -----------------------------------------------------------------

_HOW_TO_ALLOW = {
    "creating a user namespace": (
        "user namespaces must be enabled and not filtered: `sysctl user.max_user_namespaces` above 0 (and "
        "`kernel.unprivileged_userns_clone=1` on kernels that have it). Docker's default seccomp profile blocks "
        "unshare and clone with namespace flags: run the container with `--security-opt seccomp=unconfined` (or a "
        "profile allowing unshare, clone, mount, umount2 and pivot_root); in Kubernetes set the container's "
        "`securityContext.seccompProfile.type: Unconfined`"
    ),
    "mapping uid 65534": (
        "started as root, the sandbox needs CAP_SETUID, CAP_SETGID and CAP_SETFCAP (granted by Docker and "
        "Kubernetes by default: do not drop them), or start it as a non-root user"
    ),
    "mounting the sandbox's root": (
        "mounting inside an unprivileged user namespace must be allowed: on Ubuntu 23.10 and later `sysctl "
        "kernel.apparmor_restrict_unprivileged_userns=0` (or an AppArmor profile granting `userns`); in Docker "
        "`--security-opt apparmor=unconfined --security-opt seccomp=unconfined`; in Kubernetes the container's "
        "`securityContext.appArmorProfile.type: Unconfined` and `seccompProfile.type: Unconfined`"
    ),
}


@contextlib.contextmanager
def _step(what: str):
    """Turn the kernel's refusal of one step of the isolation into the one message that explains it."""
    try:
        yield
    except OSError as err:
        raise SandboxUnavailable(
            f"the code sandbox cannot isolate programs here: {what} failed ({err}). To allow it: "
            f"{_HOW_TO_ALLOW[what]}. It never runs code without isolation."
        ) from None


# ---- system calls -------------------------------------------------------------------------------------------------

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC = 1 << 10, 1 << 11, 1 << 12, 1 << 14
_MS_RELATIME, _MS_STRICTATIME = 1 << 21, 1 << 24
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS = 1, 4, 24, 28
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
# noroot, no_setuid_fixup and no_cap_ambient_raise, each locked, and keep_caps locked off: nothing regains a capability.
_SECUREBITS = 0b11101111
_SYSCALLS = {"x86_64": {"clone": 56, "pivot_root": 155}, "aarch64": {"clone": 220, "pivot_root": 41}}

_libc = ctypes.CDLL(None, use_errno=True)
# Declared argument types spare each call converting its arguments by hand, which a run pays for in full.
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc_holding_the_gil = ctypes.PyDLL(None, use_errno=True)  # for clone: os.fork too keeps the GIL across fork(2)
for _hook in ("PyOS_BeforeFork", "PyOS_AfterFork_Parent", "PyOS_AfterFork_Child"):
    getattr(ctypes.pythonapi, _hook).restype = None


def _c(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _check(result: int, what: str) -> int:
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_c(source), _c(target), _c(fstype), flags, _c(data)), f"mount {source or fstype} on {target}")


def _prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), "prctl")


def _syscall(name: str, *args: int | bytes, libc: ctypes.CDLL = _libc) -> int:
    return _check(libc.syscall(_SYSCALLS[os.uname().machine][name], *args), name)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _clear_capabilities() -> None:
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")  # v3: two zero words


def _clone_into_new_namespaces() -> int:
    """os.fork(), but the child starts in a new user, mount and PID namespace, as that namespace's PID 1: clone(2)
    wrapped in the interpreter's own before- and after-fork steps, as os.fork wraps fork(2)."""
    flags = _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | signal.SIGCHLD
    ctypes.pythonapi.PyOS_BeforeFork()
    try:
        pid = _syscall("clone", ctypes.c_ulong(flags), 0, 0, 0, 0, libc=_libc_holding_the_gil)
    except OSError:
        ctypes.pythonapi.PyOS_AfterFork_Parent()
        raise
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    else:
        ctypes.pythonapi.PyOS_AfterFork_Parent()
    return pid


def _write_id_maps(process: str, uid_map: str, gid_map: str, deny_setgroups: bool, proc: int | None = None) -> None:
    """Write a process's uid_map and gid_map (denying setgroups first if asked); `process` is its folder in /proc
    (relative to the descriptor `proc` when given)."""
    files = [("setgroups", "deny")] if deny_setgroups else []
    for name, text in files + [("uid_map", uid_map), ("gid_map", gid_map)]:
        _write_file(f"{process}/{name}", text, proc)


def _write_file(path: str, text: str, directory: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY, dir_fd=directory)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# ---- the zygote ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Root:
    """What the runs' root holds, planned from the host's layout before the zygote leaves it."""

    directories: tuple[str, ...]  # parents first
    symlinks: tuple[tuple[str, str], ...]  # (path, target)
    files: tuple[str, ...]  # created empty, to bind files onto
    read_only: tuple[tuple[str, int], ...]  # (host path, mount flags its read-only remount must keep)
    devices: tuple[str, ...]


def _plan_root() -> _Root:
    binds = ["/usr"]
    symlinks = [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"),
                ("/dev/stderr", "/proc/self/fd/2"), ("/dev/shm", "/tmp")]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):  # with merged /usr, links into /usr
        if os.path.islink(top):
            symlinks.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            binds.append(top)
    if not any(_within(sys.base_prefix, bound) for bound in binds):
        binds.append(sys.base_prefix)
    files = [path for path in ("/etc/ld.so.cache",) if os.path.isfile(path)]
    devices = [path for path in ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom") if os.path.exists(path)]
    directories = {"/proc", "/tmp", "/dev", *binds}
    for path in [*binds, *files, *devices]:  # parents, created in the tmpfs: open to all, whatever the host's are
        parent = os.path.dirname(path)
        while parent != "/":
            directories.add(parent)
            parent = os.path.dirname(parent)
    return _Root(
        directories=tuple(sorted(directories)),
        symlinks=tuple(symlinks),
        files=tuple(files + devices),
        read_only=tuple((path, _locked_flags(path)) for path in binds + files),
        devices=tuple(devices),
    )


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _locked_flags(path: str) -> int:
    """The flags of the mount holding `path` that a read-only remount inside a user namespace must repeat (the
    kernel locks them on mounts that come from the host), translated from statvfs's ST_* to mount's MS_*."""
    flags = os.statvfs(path).f_flag
    kept = _MS_NOSUID | _MS_NODEV | (_MS_NOEXEC if flags & os.ST_NOEXEC else 0)
    if flags & os.ST_NODIRATIME:
        kept |= _MS_NODIRATIME
    if flags & os.ST_NOATIME:
        return kept | _MS_NOATIME
    return kept | (_MS_RELATIME if flags & os.ST_RELATIME else _MS_STRICTATIME)


def _zygote_main() -> None:
    """The process `Sandbox` starts: enters the zygote's namespaces, then forks the zygote, PID 1 of its own."""
    requests, replies = int(sys.argv[1]), int(sys.argv[2])
    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    # What every program starts with, set here once rather than in each run.
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "LANG": "C.UTF-8"})
    os.umask(0o022)
    sys.executable = os.path.realpath(sys.executable)  # a venv's link is not in the sandbox; its target is
    privileged = os.geteuid() == 0
    try:
        root = _plan_root()
        # Each run maps its own ids through the host's /proc, open here for good: the zygote's /proc shows only
        # its own PID namespace, and a container may forbid mounting /proc at all.
        host_proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
        with open("/proc/sys/kernel/cap_last_cap") as cap_last_cap:
            last_cap = int(cap_last_cap.read())
        _enter_zygote_namespaces(privileged)
    except SandboxUnavailable as err:
        _send(replies, str(err))
        return
    zygote = os.fork()  # the first child after unshare(CLONE_NEWPID): PID 1 of the new namespace
    if zygote == 0:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # should this process be killed, the zygote dies too
        try:
            with _step("mounting the sandbox's root"):
                mount_proc = _build_root(root)
            _become_unprivileged(privileged)
        except SandboxUnavailable as err:
            _send(replies, str(err))
            os._exit(1)
        _serve(requests, replies, _Zygote(host_proc, mount_proc, last_cap, _program_streams()))
        os._exit(0)
    os.close(requests)
    os.close(replies)
    os.waitpid(zygote, 0)
    os._exit(0)


def _enter_zygote_namespaces(privileged: bool) -> None:
    """Enter the zygote's user, network, PID (for its children) and mount namespaces. Its user namespace maps uid
    and gid 1 to 65534 when started as root (and 0 to root, for building the root), else to the caller's ids."""
    flags = _CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWNS
    if not privileged:
        with _step("creating a user namespace"):
            _unshare(flags)
            _write_id_maps("/proc/self", f"1 {os.getuid()} 1", f"1 {os.getgid()} 1", deny_setgroups=True)
        return
    # A process may map only its own uid into the namespace it just entered: a helper left outside maps 65534.
    go_r, go_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(go_w)
        if os.read(go_r, 1):
            try:
                id_map = f"0 0 1\n1 {PROGRAM_ID} 1"
                _write_id_maps(f"/proc/{os.getppid()}", id_map, id_map, deny_setgroups=False)
            except OSError as err:
                os._exit(err.errno or 1)
        os._exit(0)
    os.close(go_r)
    try:
        with _step("creating a user namespace"):
            _unshare(flags)
        os.write(go_w, b"go")
    finally:
        os.close(go_w)
        status = os.waitstatus_to_exitcode(os.waitpid(helper, 0)[1])
    if status:
        with _step("mapping uid 65534"):
            raise OSError(status, f"writing uid_map: {os.strerror(status)}")


_STAGE = "/tmp"  # where the root is assembled, in the zygote's own mount namespace, before it becomes "/"


def _build_root(root: _Root) -> bool:
    """Assemble the runs' root, pivot into it and detach the host's. Returns whether /proc could be mounted."""
    new = _STAGE
    _mount("tmpfs", new, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755")
    for directory in root.directories:
        os.mkdir(new + directory, 0o755)
    for path, target in root.symlinks:
        os.symlink(target, new + path)
    for path in root.files:
        os.close(os.open(new + path, os.O_CREAT | os.O_WRONLY, 0o644))
    for path, kept in root.read_only:
        _mount(path, new + path, None, _MS_BIND | _MS_REC)
        _mount(None, new + path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)
    for path in root.devices:
        _mount(path, new + path, None, _MS_BIND)
    # The zygote's /proc (its PID namespace: itself and the runs) lies under each run's own. The kernel lets a
    # namespace mount a new /proc only where one is already fully visible; where the host's has masked parts
    # (Docker), neither can be mounted, and runs have no /proc rather than the host's.
    mount_proc = _mount_proc(new + "/proc")
    os.chdir(new)
    _syscall("pivot_root", b".", b".")  # the old root now lies on top of the new one, at "/"
    _check(_libc.umount2(b".", _MNT_DETACH), "umount2")
    _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir("/")
    return mount_proc


def _mount_proc(target: str) -> bool:
    try:
        _mount("proc", target, "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except PermissionError:
        return False
    return True


def _become_unprivileged(privileged: bool) -> None:
    """The zygote keeps no privilege: it becomes uid and gid 1 of its namespace, with no capability."""
    if privileged:
        os.setgroups([])
    os.setresgid(1, 1, 1)
    os.setresuid(1, 1, 1)
    _clear_capabilities()


@dataclass(frozen=True)
class _Zygote:
    host_proc: int  # a descriptor of the host's /proc
    mount_proc: bool  # whether runs can mount a /proc of their own
    last_cap: int  # the highest capability this kernel knows
    streams: tuple  # the program's stdin, stdout and stderr (see _program_streams)


def _program_streams() -> tuple:
    """The program's sys.stdin, sys.stdout and sys.stderr, built once here rather than in every run: a run pays
    for each object it builds, as every page it writes to is copied. They read and write descriptors 0, 1 and 2,
    which each run replaces with its own pipes; they are built over a pipe too, so that what they learn of their
    descriptor at creation (not seekable, not a terminal) holds in the runs."""
    originals = [os.dup(fd) for fd in (0, 1, 2)]
    read_end, write_end = os.pipe()
    for fd, end in [(0, read_end), (1, write_end), (2, write_end)]:
        os.dup2(end, fd)
    streams = (
        open(0, encoding="utf-8", closefd=False),
        open(1, "w", encoding="utf-8", closefd=False),
        open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False),
    )
    for fd, original in enumerate(originals):
        os.dup2(original, fd)
        os.close(original)
    os.close(read_end)
    os.close(write_end)
    return streams


def _serve(requests: int, replies: int, zygote: _Zygote) -> None:
    gc.freeze()  # what the zygote imported stays out of the collector: runs copy fewer of its pages
    _send(replies, None)
    while True:
        try:
            code, stdin, limits = _receive(requests)
        except EOFError:
            return
        try:
            reply = _zygote_run(code, stdin, limits, zygote)
        except (OSError, SandboxUnavailable) as err:
            reply = f"the sandbox could not start a run: {err}"
        _send(replies, reply)


# The run's descriptors, once its PID 1 has put them in place: stdin, stdout, stderr, report, then for its setup only
# a pipe to the zygote and the host's /proc.
_TO_ZYGOTE, _HOST_PROC = 4, 5


def _zygote_run(code: str, stdin: bytes, limits: Limits, zygote: _Zygote) -> RunResult | str:
    started = time.monotonic()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe()
    ready_r, ready_w = os.pipe()
    theirs = [in_r, out_w, err_w, report_w, ready_w]
    try:
        with _step("creating a user namespace"):
            run = _clone_into_new_namespaces()
    except SandboxUnavailable:
        for fd in theirs + [in_w, out_r, err_r, report_r, ready_r]:
            os.close(fd)
        raise
    if run == 0:
        try:
            _keep_only(theirs + [zygote.host_proc])
            _run_as_pid1(code, limits, zygote)
        except BaseException:  # a bug of the sandbox itself: say so where someone reads it
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(120)
    for fd in theirs:
        os.close(fd)
    said = _read_all(ready_r)  # "ready", or why not, once the run is isolated (or dead)
    os.close(ready_r)
    if said != b"ready\n":
        os.kill(run, signal.SIGKILL)
        os.waitpid(run, 0)
        for fd in (in_w, out_r, err_r, report_r):
            os.close(fd)
        return said.decode(errors="replace").strip() or "the run died during its setup"
    streams, timed_out, truncated = _exchange(in_w, {out_r: [], err_r: [], report_r: []}, stdin, started, limits)
    if not (timed_out or truncated) and not _exits_by(run, started + limits.wall_s):
        timed_out = True  # it closed its output but kept running
    if timed_out or truncated:
        os.kill(run, signal.SIGKILL)  # the run's PID 1: the kernel kills every process of its namespace
    _, status = os.waitpid(run, 0)
    for fd in (out_r, err_r, report_r):
        os.close(fd)
    cap = limits.output_bytes
    return RunResult(
        exit_code=None if (timed_out or truncated) else os.waitstatus_to_exitcode(status),
        stdout=b"".join(streams[out_r])[:cap],
        stderr=b"".join(streams[err_r])[:cap],
        report=b"".join(streams[report_r])[:cap],
        timed_out=timed_out,
        output_truncated=truncated,
        wall_s=time.monotonic() - started,
    )


def _exits_by(pid: int, deadline: float) -> bool:
    process = os.pidfd_open(pid)  # readable once the process has exited
    try:
        return bool(select.select([process], [], [], max(0.0, deadline - time.monotonic()))[0])
    finally:
        os.close(process)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _exchange(in_w: int, streams: dict[int, list[bytes]], stdin: bytes, started: float, limits: Limits):
    """Feed stdin and collect the output streams until they close, the wall-clock limit or the output cap."""
    os.set_blocking(in_w, False)  # a full pipe must never block the zygote: it keeps reading, and keeps time
    pending = memoryview(stdin)
    if not pending:
        os.close(in_w)
        in_w = -1
    open_fds = set(streams)
    total = 0
    timed_out = truncated = False
    deadline = started + limits.wall_s
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        readable, writable, _ = select.select(list(open_fds), [in_w] if in_w >= 0 else [], [], remaining)
        if writable:
            try:
                pending = pending[os.write(in_w, pending[:65536]):]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                pending = pending[:0]
            if not pending:
                os.close(in_w)
                in_w = -1
        for fd in readable:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                continue
            total += len(data)
            streams[fd].append(data)
            if total > limits.output_bytes:
                truncated = True
                open_fds.clear()
    if in_w >= 0:
        os.close(in_w)
    return streams, timed_out, truncated


def _keep_only(fds: list[int]) -> None:
    """Make fds[i] descriptor i and close every other descriptor, so that no process of the run holds a pipe end
    it should not (a write end of stdin held open, and the program never sees EOF)."""
    above = [fcntl.fcntl(fd, fcntl.F_DUPFD, len(fds)) for fd in fds]  # out of the way of the dup2s below
    for target, fd in enumerate(above):
        os.dup2(fd, target)
    os.closerange(len(fds), resource.getrlimit(resource.RLIMIT_NOFILE)[1])


# ---- inside the run -----------------------------------------------------------------------------------------------


def _run_as_pid1(code: str, limits: Limits, zygote: _Zygote) -> None:
    """The run's first process, fresh from clone(2) with every capability in its new user namespace; it becomes the
    program. Never returns. (As its namespace's init, the program ignores the signals it sends itself whose action
    is the default, SIGKILL included, and inherits its orphans: a separate init would cost another fork per run.)"""
    try:
        # A process that changed uid, as the zygote did, is undumpable, and its /proc files belong to root: this one
        # could not write its own uid_map.
        _prctl(_PR_SET_DUMPABLE, 1)
        # Uid and gid 65534 of the new namespace are the zygote's own: a process may map its own ids.
        id_map = f"{PROGRAM_ID} 1 1"
        _write_id_maps("self", id_map, id_map, deny_setgroups=True, proc=_HOST_PROC)
        os.close(_HOST_PROC)
        with _step("mounting the sandbox's root"):
            if zygote.mount_proc:
                _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
                # Nor may the program create user namespaces, in which it would hold capabilities again: a common
                # door to kernel exploits, and no test needs one. (Through this /proc: a container's is read-only.)
                _write_file("/proc/sys/user/max_user_namespaces", "0")
            _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV,
                   f"size={limits.disk_mb}m,nr_inodes=16384,mode=1777")  # inodes bounded: empty files cost memory
        os.mkdir(WORKDIR, 0o755)
        os.chdir(WORKDIR)
        _drop_privileges(zygote.last_cap)
        _set_limits(limits)
    except BaseException as err:
        os.write(_TO_ZYGOTE, f"{err}\n".encode())
        os._exit(120)
    os.write(_TO_ZYGOTE, b"ready\n")
    os.close(_TO_ZYGOTE)
    _run_program(code, zygote.streams)


def _drop_privileges(last_cap: int) -> None:
    _prctl(_PR_SET_SECUREBITS, _SECUREBITS)
    for capability in range(last_cap + 1):
        _prctl(_PR_CAPBSET_DROP, capability)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    _clear_capabilities()
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def _set_limits(limits: Limits) -> None:
    for which, value in [
        (resource.RLIMIT_AS, limits.memory_mb << 20),
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_FSIZE, limits.disk_mb << 20),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ]:
        resource.setrlimit(which, (value, value))


def _run_program(code: str, streams: tuple) -> None:
    """Run `code` as `python3 -c` would, in this cloned interpreter. Never returns."""
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
    sys.argv = ["-c"]
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    status = 0
    try:
        exec(compile(code, "<solution>", "exec"), main.__dict__)
    except SystemExit as exit_:
        status = _exit_status(exit_.code)
    except BaseException as err:  # the program's own failure: report it like an interpreter would, minus this frame
        traceback.print_exception(type(err), err, err.__traceback__.tb_next if err.__traceback__ else None)
        status = 1
    try:
        if "threading" in sys.modules:  # as the interpreter does at exit: wait for the program's threads
            sys.modules["threading"]._shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _exit_status(code: object) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1
