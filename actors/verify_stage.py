"""Ray Data stage for `jobs.verify`: a pool of CPU actors, each owning a `ResponseVerifier` (and its child process)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import VerifyJobConfig
from pipeline.verifiers.audit import score_row
from pipeline.verifiers.dispatch import ResponseVerifier


class VerifyStage:
    def __init__(self, config: dict[str, Any]):
        self._config = VerifyJobConfig.model_validate(config)
        self._verifier = ResponseVerifier(self._config.verifiers)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [
            score_row(raw, origin, source, self._verifier, self._config.response_format)
            for raw, origin, source in zip(batch["raw"], batch["origin"], batch["source"])
        ]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}

    def __del__(self):
        verifier = getattr(self, "_verifier", None)
        if verifier is not None:
            verifier.close()
