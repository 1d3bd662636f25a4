"""The sandbox: ordinary programs run; every attack is contained, reported, and leaves the host unharmed."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from pipeline.verifiers.sandbox import Limits, Sandbox

LIMITS = Limits(wall_s=3.0, cpu_s=2, memory_mb=256, output_bytes=100_000, processes=16, disk_mb=8)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(LIMITS)
    yield box
    box.close()


def test_a_program_reads_stdin_and_writes_stdout(sandbox):
    run = sandbox.run("n = int(input())\nprint(n * 2)", b"21\n")
    assert run.ok and run.stdout == b"42\n"


def test_it_runs_as_nobody_in_a_private_directory(sandbox):
    run = sandbox.run("import os; print(os.getuid(), os.getgid(), os.getcwd())")
    assert run.stdout.split() == [b"65534", b"65534", b"/tmp/run"]


def test_exit_codes_and_exceptions_are_reported(sandbox):
    assert sandbox.run("import sys; sys.exit(3)").exit_code == 3
    failed = sandbox.run("assert 1 == 2")
    assert failed.exit_code == 1 and b"AssertionError" in failed.stderr


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


def test_fork_bomb_is_contained(sandbox):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    run = sandbox.run(code)
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


def test_secrets_are_out_of_reach(sandbox, monkeypatch):
    home_secret = Path.home() / ".distillery-test-secret"
    home_secret.write_text("hunter2")
    try:
        run = sandbox.run(
            "import os\nprint(sorted(os.environ))\n"
            f"try:\n    print(open({str(home_secret)!r}).read())\nexcept OSError as e:\n    print('denied', e.errno)"
        )
    finally:
        home_secret.unlink()
    assert b"hunter2" not in run.stdout
    assert b"denied 13" in run.stdout
    assert b"AWS" not in run.stdout and run.stdout.startswith(b"['HOME', 'LANG', 'PATH']")


def test_writing_outside_the_sandbox_fails(sandbox, tmp_path):
    target = tmp_path / "escape"
    os.chmod(tmp_path, 0o777)
    run = sandbox.run(f"open({str(target)!r}, 'w').write('x')\nopen('/etc/passwd', 'a').write('x')")
    assert run.exit_code != 0
    assert not target.exists()


def test_infinite_loop_is_stopped(sandbox):
    run = sandbox.run("while True:\n    pass")
    assert run.timed_out or run.exit_code != 0
    assert run.wall_s < LIMITS.wall_s + 2


def test_killing_the_parent_is_refused(sandbox):
    targets = [sandbox.zygote_pid, os.getpid()]
    run = sandbox.run(f"import os, signal\nfor pid in {targets}:\n    os.kill(pid, signal.SIGKILL)")
    # Host processes are invisible from the sandbox's PID namespace, and uid 65534 could not signal them anyway.
    assert run.exit_code == 1 and (b"ProcessLookupError" in run.stderr or b"PermissionError" in run.stderr)
    assert sandbox.run("print('zygote alive')").stdout == b"zygote alive\n"


def test_sleeping_past_the_limit_is_killed_with_its_children(sandbox):
    # The escaping child prints its pid as the host sees it (/proc is the host's), then sleeps in a session of its own.
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    print(os.readlink('/proc/self'), flush=True)\n"
        "    time.sleep(60)\n"
        "time.sleep(60)"
    )
    run = sandbox.run(code)
    assert run.timed_out and run.wall_s < LIMITS.wall_s + 2
    escaped = int(run.stdout.split()[0])
    deadline = time.monotonic() + 5  # the kernel tears a PID namespace down asynchronously
    while alive(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(escaped), "the escaped child died with the run"


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status
