"""Distill metrics reach the Prometheus endpoint that the Ray dashboard scrapes, from inside an actor."""

import time
import urllib.request

import pytest
import ray

from actors.metrics import DistillMetrics
from pipeline.regenerate import Outcome
from pipeline.schema import Reject


@pytest.fixture(scope="module")
def local_ray():
    context = ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield context
    ray.shutdown()


@ray.remote
class Recorder:
    def __init__(self):
        self.metrics = DistillMetrics("t")

    def record_exhausted(self):
        reject = Reject(id="q", origin="x", stage="distill", teacher="t", reason="exhausted", detail="", attempts=4,
                        config_hash="c")
        self.metrics.started(1)
        self.metrics.record(Outcome(None, reject, []))


def test_rejects_by_reason_and_attempts_are_exported(local_ray):
    recorder = Recorder.remote()
    ray.get(recorder.record_exhausted.remote())
    port = ray._private.worker.global_worker.node.metrics_export_port
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if "distillery_rejected" in text and "distillery_attempts" in text:
            break
        time.sleep(1)
    rejected = [line for line in text.splitlines()
                if line.startswith(("ray_distillery_rejected", "distillery_rejected"))]
    assert any('reason="exhausted"' in line and 'teacher="t"' in line for line in rejected), text[-2000:]
    assert "distillery_attempts" in text and "distillery_in_flight" in text
