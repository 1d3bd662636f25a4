"""Training FLOPs: 6·N per token plus attention counted per document (Σ L², not the pack's length squared)."""

from types import SimpleNamespace

import pytest

from pipeline.flops import FlopsModel, gpu_peak_flops, mfu

LLAMA = SimpleNamespace(num_attention_heads=4, hidden_size=256, num_hidden_layers=2, tie_word_embeddings=False)


@pytest.mark.parametrize(
    "config, total, embedding, matmul_params, width",
    [
        (LLAMA, 1000, 300, 700, 256),
        (SimpleNamespace(**{**vars(LLAMA), "tie_word_embeddings": True}), 1000, 300, 1000, 256),
        (SimpleNamespace(**{**vars(LLAMA), "head_dim": 128}), 1000, 300, 700, 512),
    ],
    ids=["untied: embedding lookup is free", "tied: the matrix is the output projection", "explicit head_dim"],
)
def test_model_shape(config, total, embedding, matmul_params, width):
    model = FlopsModel.from_hf_config(config, total, embedding)
    assert (model.matmul_params, model.n_layers, model.attention_width) == (matmul_params, 2, width)


def test_attention_is_counted_per_document_not_per_pack():
    model = FlopsModel(matmul_params=1000, n_layers=2, attention_width=256)
    two_documents = model.training_flops([100, 300])
    assert two_documents == 6 * 1000 * 400 + 12 * 2 * 256 * (100**2 + 300**2)
    assert two_documents < model.training_flops([400])


def test_mfu_is_achieved_over_peak():
    assert mfu(flops=4e12, seconds=2.0, workers=2, peak_flops_per_worker=1e12) == pytest.approx(1.0)
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and gpu_peak_flops("Tesla T4") is None
