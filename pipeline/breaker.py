"""A per-teacher circuit breaker: an endpoint that fails every request (a bad key, a wrong URL, a dead server)
should stop its teacher with one message, not turn the whole corpus into rejects.

The breaker watches the teacher's finished rows in order. It trips when, over a full window, the share of rows that
ended in request failures reaches the configured rate; a window is full at `window` rows, or at every row the run
has to do when there are fewer. Rows that failed are held back until they leave the window: when the breaker trips,
none of the rows that tripped it has been committed, so a run after the fix tries them again. Rows that did not fail
pass straight through.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class CircuitBreaker(Generic[T]):
    def __init__(self, window: int, failure_rate: float | None, expected_rows: int):
        self._window = max(1, min(window, expected_rows))
        self._failure_rate = failure_rate
        self._recent: deque[str | None] = deque(maxlen=self._window)  # each row's failure reason, None if none
        self._held: deque[tuple[int, T]] = deque()
        self._finished = 0
        self.tripped = False

    def add(self, item: T, failure: str | None) -> list[T]:
        """Record one finished row (`failure`: its request-failure reason, or None); returns what may be committed
        now. After the breaker has tripped, nothing more is released."""
        self._finished += 1
        self._recent.append(failure)
        released = [item] if failure is None else []
        if failure is not None:
            self._held.append((self._finished, item))
        while self._held and self._held[0][0] <= self._finished - self._window:
            released.append(self._held.popleft()[1])
        failed = sum(f is not None for f in self._recent)
        if (
            self._failure_rate is not None
            and len(self._recent) == self._window
            and failed >= self._failure_rate * self._window
        ):
            self.tripped = True
        return released

    def drain(self) -> list[T]:
        """The rows still held, at the end of a run that did not trip: they are final rejects like any other."""
        assert not self.tripped
        held = [item for _, item in self._held]
        self._held.clear()
        return held

    def describe(self) -> str:
        reasons = Counter(f for f in self._recent if f is not None)
        failed = sum(reasons.values())
        by_reason = ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
        return f"{failed} of its last {len(self._recent)} rows failed at the endpoint ({by_reason})"
