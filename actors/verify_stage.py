"""Ray Data stage for `jobs.verify`: parses rows and sends each response to the verifier pool (CPU checkers, and
judge actors when a judge is configured). The stage itself is light; the pool does the work."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from actors.verifier_pool import VerifierPool
from pipeline.response_format import ResponseFormat
from pipeline.schema import Query
from pipeline.verifiers.audit import score_row
from pipeline.verifiers.base import Verdict


class VerifyStage:
    def __init__(self, verifiers: VerifierPool, response_format: ResponseFormat):
        self._verifiers = verifiers
        self._response_format = response_format

    async def _verify(self, query: Query, response: str) -> Verdict:
        return await self._verifiers.verify(query, response, self._response_format)

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows: list[dict[str, Any]] = await asyncio.gather(*(
            score_row(raw, origin, source, self._verify, error)
            for raw, origin, source, error in zip(batch["raw"], batch["origin"], batch["source"], batch["error"])
        ))
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
