"""The killable worker: a hard wall-clock limit per call, a start-up that no call pays for, and a loud error when a
child cannot start."""

import os
import time

import pytest

from pipeline.verifiers.killable import CallTimedOut, ChildCrashed, KillableWorker, WorkerStartFailed

HERE = "tests.pipeline.verifiers.test_killable"


# Run in the children.
def slow_warm_up():
    time.sleep(1.5)


def broken_warm_up():
    raise ImportError("the verifier's dependency is missing")


def exit_when(crash: bool) -> str:
    if crash:
        os._exit(1)
    return "alive"


def test_a_hung_call_is_killed_at_the_wall_clock_limit_and_a_fresh_child_serves_the_next():
    worker = KillableWorker("time:sleep", timeout_s=0.5)
    worker.call(0)
    started = time.monotonic()
    with pytest.raises(CallTimedOut):
        worker.call(30)
    assert time.monotonic() - started < 5
    assert worker.call(0) is None
    worker.close()


def test_the_first_call_does_not_pay_for_the_start_up():
    worker = KillableWorker("builtins:len", timeout_s=0.5, warm_up=f"{HERE}:slow_warm_up")
    assert worker.call("abc") == 3, "the 1.5 s warm-up ran before the call's 0.5 s"
    worker.close()


def test_after_a_kill_the_next_call_does_not_pay_for_the_new_childs_start_up():
    worker = KillableWorker("time:sleep", timeout_s=0.5, warm_up=f"{HERE}:slow_warm_up")
    with pytest.raises(CallTimedOut):
        worker.call(30)
    assert worker.call(0) is None
    worker.close()


def test_a_child_that_dies_mid_call_is_reported_and_replaced():
    worker = KillableWorker(f"{HERE}:exit_when", timeout_s=5)
    with pytest.raises(ChildCrashed):
        worker.call(True)
    assert worker.call(False) == "alive"
    worker.close()


@pytest.mark.parametrize(
    "target, warm_up, start_timeout_s, message",
    [
        pytest.param("no_such_module:check", None, 60, "No module named 'no_such_module'", id="missing-module"),
        pytest.param("builtins:len", f"{HERE}:broken_warm_up", 60, "dependency is missing", id="warm-up-fails"),
        pytest.param("builtins:len", f"{HERE}:slow_warm_up", 0.2, "not ready within 0.2 s", id="not-ready-in-time"),
    ],
)
def test_a_child_that_cannot_get_ready_is_a_broken_worker(target, warm_up, start_timeout_s, message):
    worker = KillableWorker(target, timeout_s=1, warm_up=warm_up, start_timeout_s=start_timeout_s)
    with pytest.raises(WorkerStartFailed, match=message):
        worker.call("abc")
    worker.close()
