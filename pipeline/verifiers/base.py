"""The one verifier interface: a query and a response in, a `Verdict` out.

A verifier never raises on bad model output: bad output is a score of 0 with a failure reason. It raises only when
the verifier itself is broken (a bug, a missing dependency).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pipeline.schema import Query


@dataclass(frozen=True)
class Verdict:
    score: float  # in [0, 1]
    verifier: str  # name/version
    details: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None  # snake_case reason when the response fell short

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        return cls(**data)


class Verifier(Protocol):
    name: str

    def verify(self, query: Query, answer: str) -> Verdict:
        """Score the answer part of a response (the structure is already checked)."""
        ...
