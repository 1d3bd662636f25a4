"""The sandbox: ordinary programs run; every attack is contained, reported, and leaves the host unharmed."""

import dataclasses
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pipeline.verifiers.sandbox import REPORT_FD, Limits, Sandbox, isolation_problem

LIMITS = Limits(wall_s=3.0, cpu_s=2, memory_mb=256, output_bytes=100_000, processes=16, disk_mb=8)
SHORT = dataclasses.replace(LIMITS, wall_s=1.0, cpu_s=1)  # for runs that only end at a limit
COMPILE_LIMITS = Limits(wall_s=60.0, cpu_s=60, memory_mb=2048, output_bytes=1 << 20, processes=32, disk_mb=64)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(LIMITS)
    yield box
    box.close()


# ---- ordinary programs ----------------------------------------------------------------------------------------------


def test_a_program_reads_stdin_and_writes_stdout(sandbox):
    run = sandbox.run("n = int(input())\nprint(n * 2)", b"21\n")
    assert run.ok and run.stdout == b"42\n"


@pytest.mark.parametrize(
    "program",
    [
        pytest.param("import sys\nprint(sum(map(int, sys.stdin.read().split())))", id="read"),
        pytest.param("import sys\nprint(sum(int(x) for line in sys.stdin.readlines() for x in line.split()))",
                     id="readlines"),
        pytest.param("import sys\ntotal = 0\nfor line in sys.stdin:\n    total += sum(map(int, line.split()))\n"
                     "print(total)", id="for-line-in-stdin"),
        pytest.param("print(sum(map(int, open(0).read().split())))", id="open-0"),
        pytest.param("import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))", id="buffer-read"),
        pytest.param("total = 0\nwhile True:\n    try:\n        total += sum(map(int, input().split()))\n"
                     "    except EOFError:\n        break\nprint(total)", id="input-until-eof"),
    ],
)
def test_every_stdin_idiom_reads_to_the_end(sandbox, program):
    run = sandbox.run(program, b"1 2\n3\n4 5\n")
    assert run.ok and run.stdout == b"15\n", run


def test_large_stdin_and_stdout_stream_through(sandbox):
    data = b"x" * 3_000_000
    run = sandbox.run("import sys\nsys.stdout.write(str(len(sys.stdin.buffer.read())))",
                      data, limits=Limits(output_bytes=1 << 20, wall_s=10.0))
    assert run.ok and run.stdout == b"3000000"


@pytest.mark.skipif(not Path("/usr/bin/g++").exists(), reason="g++ is not installed")
def test_a_cpp_program_compiled_inside_reads_stdin_to_the_end(sandbox):
    source = "#include <iostream>\nint main() { long long x, t = 0; while (std::cin >> x) t += x; std::cout << t; }\n"
    program = (  # as pipeline/verifiers/code.py compiles and runs C++
        "import os\n"
        f"open('main.cpp', 'w').write({source!r})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execv('/usr/bin/g++', ['g++', '-O1', '-o', 'main', 'main.cpp'])\n"
        "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0\n"
        "os.execv('./main', ['./main'])\n"
    )
    run = sandbox.run(program, b"1 2\n3\n4 5\n", limits=COMPILE_LIMITS)
    assert run.ok and run.stdout == b"15", run


def test_it_runs_as_nobody_in_a_private_directory(sandbox):
    run = sandbox.run("import os; print(os.getuid(), os.getgid(), os.getcwd(), os.environ['HOME'])")
    assert run.stdout.split() == [b"65534", b"65534", b"/tmp/run", b"/tmp/run"]


def test_exit_codes_and_exceptions_are_reported(sandbox):
    assert sandbox.run("import sys; sys.exit(3)").exit_code == 3
    said = sandbox.run("import sys; sys.exit('bad input')")
    assert said.exit_code == 1 and said.stderr == b"bad input\n"
    failed = sandbox.run("assert 1 == 2")
    assert failed.exit_code == 1 and b"AssertionError" in failed.stderr
    assert b"sandbox.py" not in failed.stderr, "the traceback is the program's own"


def test_the_standard_library_beyond_the_preloaded_modules_is_importable(sandbox):
    run = sandbox.run("import csv, sqlite3, xml.dom.minidom, zlib\nprint(sqlite3.connect(':memory:').execute("
                      "'select 6 * 7').fetchone()[0])")
    assert run.ok and run.stdout == b"42\n", run


def test_a_program_can_start_the_interpreter_again(sandbox):
    run = sandbox.run("import subprocess, sys\nprint(subprocess.run([sys.executable, '-c', 'print(7)'], "
                      "capture_output=True, text=True).stdout.strip())", limits=dataclasses.replace(LIMITS, wall_s=10))
    assert run.ok and run.stdout == b"7\n", run


def test_threads_finish_before_the_program_exits(sandbox):
    # Competitive programmers start their solution in a thread (for a bigger stack) and return at once.
    run = sandbox.run("import threading, time\ndef main():\n    time.sleep(0.1)\n    print('done')\n"
                      "threading.stack_size(1 << 26)\nthreading.Thread(target=main).start()")
    assert run.ok and run.stdout == b"done\n"


def test_the_report_channel_comes_back_apart_from_stdout(sandbox):
    run = sandbox.run(f"import os\nprint('out')\nos.write({REPORT_FD}, b'passed 3 of 3')")
    assert run.ok and run.stdout == b"out\n" and run.report == b"passed 3 of 3"


def test_the_report_channel_counts_toward_the_output_cap(sandbox):
    run = sandbox.run(f"import os\nwhile True:\n    os.write({REPORT_FD}, b'x' * 10000)")
    assert run.output_truncated and not run.ok
    assert len(run.report) <= LIMITS.output_bytes


# ---- isolation ----------------------------------------------------------------------------------------------------


def expected_root() -> list[str]:
    """What the sandbox mounts: /usr and its links, the Python installation, /etc, /dev, /proc, /tmp."""
    names = {"usr", "etc", "dev", "proc", "tmp", Path(sys.base_prefix).parts[1]}
    names |= {top for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32") if os.path.lexists("/" + top)}
    return sorted(names)


@pytest.fixture
def host_file():
    """A world-readable file in a world-readable host folder outside /tmp."""
    folder = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="distillery-sandbox-"))
    folder.chmod(0o755)
    secret = folder / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    yield secret
    shutil.rmtree(folder)


def test_host_files_are_out_of_reach(sandbox, host_file):
    code = (
        "import os\n"
        f"for path in [{str(host_file)!r}, '/etc/passwd', '/etc/hostname', {str(REPO / 'README.md')!r}]:\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as e:\n"
        "        print('absent', e.errno)\n"
        "print(sorted(os.listdir('/')))\n"
        "print(sorted(os.listdir('/etc')))\n"
    )
    run = sandbox.run(code)
    lines = run.stdout.decode().splitlines()
    assert lines[:4] == ["absent 2"] * 4, run
    assert lines[4] == str(expected_root())
    assert lines[5] == str(["ld.so.cache"])


def test_only_the_runs_own_processes_are_visible(sandbox):
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    time.sleep(0.5)\n"
        "    os._exit(0)\n"
        "print(os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    run = sandbox.run(code)
    assert run.stdout == b"1 [1, 2]\n", run


def test_the_program_holds_no_privilege_and_cannot_regain_one(sandbox):
    code = (
        "import ctypes, os\n"
        "status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines())\n"
        "print([status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs')])\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # a user namespace of its own
        "print(libc.umount2(b'/tmp', 2), ctypes.get_errno())\n"
        "for path in ['/usr/evil', '/evil', '/etc/evil']:\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as e:\n"
        "        print(e.errno)\n"
    )
    run = sandbox.run(code)
    assert run.stdout.decode().splitlines() == [
        str(["0000000000000000"] * 5 + ["1"]), "-1 28", "-1 1", "30", "30", "30"], run


def test_network_is_unreachable_even_on_loopback(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    run = sandbox.run(f"import socket; socket.socket().connect(('127.0.0.1', {port})); print('connected')")
    listener.close()
    assert run.exit_code != 0 and b"connected" not in run.stdout
    assert not accepted


def test_secrets_are_out_of_reach(sandbox):
    home_secret = Path.home() / ".distillery-test-secret"
    home_secret.write_text("hunter2")
    try:
        run = sandbox.run(
            "import os\nprint(sorted(os.environ))\n"
            f"try:\n    print(open({str(home_secret)!r}).read())\nexcept OSError as e:\n    print('absent', e.errno)"
        )
    finally:
        home_secret.unlink()
    assert run.stdout == b"['HOME', 'LANG', 'PATH']\nabsent 2\n"


def test_writing_outside_the_sandbox_fails(sandbox, tmp_path):
    target = tmp_path / "escape"
    os.chmod(tmp_path, 0o777)
    run = sandbox.run(f"open({str(target)!r}, 'w').write('x')\nopen('/etc/passwd', 'a').write('x')")
    assert run.exit_code != 0
    assert not target.exists()


def test_killing_the_parent_is_refused(sandbox):
    targets = [sandbox.zygote_pid, os.getpid()]
    run = sandbox.run(f"import os, signal\nfor pid in {targets}:\n    os.kill(pid, signal.SIGKILL)")
    # Host processes are invisible from the run's PID namespace.
    assert run.exit_code == 1 and b"ProcessLookupError" in run.stderr
    assert sandbox.run("print('zygote alive')").stdout == b"zygote alive\n"


# ---- limits -------------------------------------------------------------------------------------------------------


def test_a_run_cannot_exceed_its_process_limit(sandbox):
    code = ("import os, time\nforked = 0\nfor _ in range(30):\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(0.5)\n            os._exit(0)\n        forked += 1\n    except OSError:\n"
            "        break\nprint(forked)")
    run = sandbox.run(code)
    assert run.ok and run.stdout == b"%d\n" % (LIMITS.processes - 1), run  # the program itself is one


def test_fork_bomb_is_contained(sandbox):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    run = sandbox.run(code, limits=SHORT)
    assert run.timed_out or run.exit_code != 0
    assert sandbox.run("print('still here')").stdout == b"still here\n", "the sandbox survives"


def test_memory_bomb_is_contained(sandbox):
    run = sandbox.run("x = bytearray(2 * 1024 ** 3)")
    assert run.exit_code != 0 and b"MemoryError" in run.stderr


def test_disk_fill_is_contained_and_never_reaches_the_host(sandbox):
    run = sandbox.run("f = open('/tmp/fill', 'wb')\nwhile True:\n    f.write(b'x' * 1_000_000)")
    assert run.exit_code != 0
    assert not Path("/tmp/fill").exists()


def test_huge_output_is_cut(sandbox):
    run = sandbox.run("while True:\n    print('x' * 1000)")
    assert run.output_truncated and not run.ok
    assert len(run.stdout) <= LIMITS.output_bytes


def test_infinite_loop_is_stopped(sandbox):
    run = sandbox.run("while True:\n    pass", limits=SHORT)
    assert run.timed_out or run.exit_code != 0
    assert run.wall_s < SHORT.wall_s + 2


def test_closing_its_output_does_not_let_a_run_outlive_its_limit(sandbox):
    code = f"import os, time\nfor fd in (1, 2, {REPORT_FD}):\n    os.close(fd)\ntime.sleep(60)"
    run = sandbox.run(code, limits=SHORT)
    assert run.timed_out and run.wall_s < SHORT.wall_s + 2


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, as the host sees them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
        except OSError:
            continue
        if stat:
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def test_sleeping_past_the_limit_is_killed_with_its_children(sandbox):
    # The child escapes into a session of its own and would sleep for a minute.
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)"
    zygote_alone = descendants(sandbox.zygote_pid)
    outcome = []
    running = threading.Thread(target=lambda: outcome.append(sandbox.run(code, limits=SHORT)))
    running.start()
    deadline = time.monotonic() + SHORT.wall_s
    while len(descendants(sandbox.zygote_pid)) < len(zygote_alone) + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(descendants(sandbox.zygote_pid)) == len(zygote_alone) + 2, "the run and its child were seen"
    running.join()
    assert outcome[0].timed_out and outcome[0].wall_s < SHORT.wall_s + 2
    deadline = time.monotonic() + 5  # the kernel tears a PID namespace down asynchronously
    while descendants(sandbox.zygote_pid) != zygote_alone and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants(sandbox.zygote_pid) == zygote_alone, "the escaped child died with the run"


def test_process_limits_are_per_run_even_with_64_sandboxes_at_once():
    """RLIMIT_NPROC counts per (user namespace, uid): each run has its own, not one shared by every run of uid
    65534 on the node. 63 honest programs each hold 13 processes at once while a 64th is a fork bomb."""
    limits = Limits(wall_s=30.0, cpu_s=10, memory_mb=256, processes=16)
    honest = ("import os, time\nkids = []\nfor _ in range(12):\n    pid = os.fork()\n    if pid == 0:\n"
              "        time.sleep(1)\n        os._exit(0)\n    kids.append(pid)\n"
              "print(sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in kids))")
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    boxes: list[Sandbox | None] = [None] * 64
    runs = {}
    started = threading.Barrier(64)

    def drive(index: int) -> None:
        boxes[index] = Sandbox(limits)
        started.wait()
        if index == 0:
            runs[index] = boxes[index].run(bomb, limits=SHORT)
        else:
            runs[index] = boxes[index].run(honest)

    threads = [threading.Thread(target=drive, args=(index,)) for index in range(64)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for box in boxes:
            if box is not None:
                box.close()
    assert not runs[0].ok
    failed = {index: run for index, run in runs.items() if index and not (run.ok and run.stdout == b"12\n")}
    assert not failed and len(runs) == 64


# ---- where it can isolate, and where it cannot ----------------------------------------------------------------------

VARIANT = """
import json, sys
from pipeline.verifiers.sandbox import Limits, Sandbox, SandboxUnavailable
try:
    box = Sandbox(Limits(wall_s=10))
except SandboxUnavailable as err:
    print(json.dumps({"unavailable": str(err)}))
    sys.exit(0)
run = box.run(
    "import json, os, sys\\n"
    "print(json.dumps({'root': sorted(os.listdir('/')), 'processes': [p for p in os.listdir('/proc') if p.isdigit()],"
    " 'passwd': os.path.exists('/etc/passwd'), 'uid': os.getuid(), 'stdin': len(sys.stdin.read())}))", b"x" * 100000)
box.close()
print(json.dumps({"ok": run.ok, "seen": json.loads(run.stdout or "null")}))
"""


def run_variant(command: list[str], pythonpath: Path = REPO) -> dict:
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(pythonpath)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def assert_isolated_or_refused(outcome: dict) -> None:
    """Either the same isolation as here, or a refusal that says how to allow it: never code run unisolated."""
    if "unavailable" in outcome:
        assert "To allow it" in outcome["unavailable"]
        return
    seen = outcome["seen"]
    assert outcome["ok"] and seen["stdin"] == 100000
    assert "work" not in seen["root"] and "home" not in seen["root"] and not seen["passwd"]
    assert seen["processes"] == ["1"] and seen["uid"] == 65534


@pytest.mark.skipif(shutil.which("capsh") is None, reason="capsh is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_as_root_without_cap_sys_admin_it_isolates_or_refuses():
    command = f"exec {shlex.quote(sys.executable)} -c {shlex.quote(VARIANT)}"
    outcome = run_variant(["capsh", "--drop=cap_sys_admin", "--", "-c", command])
    assert "unavailable" not in outcome, "this kernel allows unprivileged user namespaces"
    assert_isolated_or_refused(outcome)


@pytest.mark.skipif(shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists(),
                    reason="setpriv or /usr/bin/python3 is missing")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_as_an_unprivileged_user_it_isolates_or_refuses():
    # The venv's interpreter lives under /root, out of an unprivileged user's reach: the system one runs this, with a
    # world-readable copy of the module (the checkout itself may sit in a private folder, as CI's clone does).
    copy = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        copy.chmod(0o755)
        for part in ("pipeline/__init__.py", "pipeline/verifiers/__init__.py", "pipeline/verifiers/sandbox.py"):
            (copy / part).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            shutil.copy(REPO / part, copy / part)
            (copy / part).chmod(0o644)
        outcome = run_variant(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                               "/usr/bin/python3", "-c", VARIANT], pythonpath=copy)
    finally:
        shutil.rmtree(copy)
    assert_isolated_or_refused(outcome)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed")
def test_where_user_namespaces_are_disabled_it_refuses_with_the_reason():
    # A user namespace whose own limit on user namespaces is 0: as on a host with user.max_user_namespaces = 0.
    python = f"exec {shlex.quote(sys.executable)} -c {shlex.quote(VARIANT)}"
    script = f"echo 0 > /proc/sys/user/max_user_namespaces && {python}"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a user namespace to test in")
    outcome = run_variant(["unshare", "--user", "--map-root-user", "sh", "-c", script])
    assert "user.max_user_namespaces" in outcome["unavailable"], outcome
    assert "No space left on device" in outcome["unavailable"]


def test_the_probe_result_is_available_without_starting_a_sandbox_per_check():
    assert isolation_problem() is None
    assert isolation_problem() is None  # cached: the second call starts nothing


def test_a_dead_sandbox_says_so_rather_than_failing_the_code():
    from pipeline.verifiers.sandbox import SandboxUnavailable

    doomed = Sandbox()
    try:
        for pid in {doomed.zygote_pid} | descendants(doomed.zygote_pid):
            os.kill(pid, 9)
        with pytest.raises(SandboxUnavailable, match="zygote died"):
            for _ in range(3):  # the first request may still fit in the dead pipe's buffer
                doomed.run("print(1)")
    finally:
        doomed.close()
