"""Builds the engine a `ServedModel` names. Engine modules import vLLM or openai, so they load only when used."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.config import ServedModel
from pipeline.engine import Engine

ENGINES = {
    "vllm": "actors.vllm_engine:VLLMEngine",
    "openai": "actors.openai_engine:OpenAIEngine",
    "reference": "pipeline.reference_samples:ReferenceEngine",
}


def build_engine(
    served: ServedModel, engine_class: str | None = None, storage_options: dict[str, Any] | None = None
) -> Engine:
    """`engine_class` ("module:Class") overrides the configured engine: the simulated engine of the benchmarks.
    `storage_options` reach engines that load their model from object storage."""
    module, _, name = (engine_class or ENGINES[served.engine.kind]).partition(":")
    return getattr(importlib.import_module(module), name)(served, storage_options)
