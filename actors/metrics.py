"""Prometheus metrics for the Ray dashboard (`ray.util.metrics`), created inside the actor that records them."""

from __future__ import annotations

from ray.util import metrics

from pipeline.regenerate import Outcome

_LATENCY_BOUNDS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]


class DistillMetrics:
    """Per teacher: accepted, rejected by reason, attempts and generated tokens."""

    def __init__(self, teacher: str):
        self._tags = {"teacher": teacher}
        self.accepted = metrics.Counter("distillery_accepted", "samples accepted", tag_keys=("teacher",))
        self.rejected = metrics.Counter(
            "distillery_rejected", "queries rejected, by reason", tag_keys=("teacher", "reason")
        )
        self.attempts = metrics.Counter("distillery_attempts", "generation rounds", tag_keys=("teacher",))
        self.generated_tokens = metrics.Counter(
            "distillery_generated_tokens", "completion tokens generated", tag_keys=("teacher",)
        )
        self.in_flight = metrics.Gauge("distillery_in_flight", "queries being distilled", tag_keys=("teacher",))
        self._in_flight = 0

    def started(self, queries: int) -> None:
        self._in_flight += queries
        self.in_flight.set(self._in_flight, self._tags)

    def record(self, outcome: Outcome) -> None:
        self._in_flight -= 1
        self.in_flight.set(self._in_flight, self._tags)
        if outcome.sample is not None:
            self.accepted.inc(1, self._tags)
            rounds = outcome.sample.attempts
        else:
            self.rejected.inc(1, {**self._tags, "reason": outcome.reject.reason})
            rounds = outcome.reject.attempts
        if rounds:
            self.attempts.inc(rounds, self._tags)
        tokens = sum(a.completion_tokens for a in outcome.attempts)
        if tokens:
            self.generated_tokens.inc(tokens, self._tags)


class VerifierMetrics:
    def __init__(self):
        self.latency = metrics.Histogram(
            "distillery_verifier_latency_s", "time to verify one response", boundaries=_LATENCY_BOUNDS_S,
            tag_keys=("category",),
        )

    def observe(self, category: str, seconds: float) -> None:
        self.latency.observe(seconds, {"category": category})


class TrainMetrics:
    """Student training, recorded by rank 0 after each optimizer step."""

    _GAUGES = (
        ("loss", "token-mean loss of the last step"),
        ("tokens_per_s", "real (non-padding) tokens per second, all ranks"),
        ("mfu", "model FLOPs utilization (pipeline/flops.py)"),
        ("packing_efficiency", "real tokens / pack slots"),
        ("step", "optimizer steps done"),
    )

    def __init__(self):
        self._gauges = {key: metrics.Gauge(f"distillery_train_{key}", text) for key, text in self._GAUGES}

    def record(self, row: dict) -> None:
        for key, gauge in self._gauges.items():
            gauge.set(row[key])
