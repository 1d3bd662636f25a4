"""Figures come out as PNG images, whatever the data holds, including nothing yet."""

import io

import numpy as np
import pyarrow as pa
import pytest

from pipeline.plots import (
    _median, count_lengths, histograms_figure, response_length_figure, threshold_figure, training_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.size


def samples(rows):
    return pa.table({
        "teacher": pa.array([r[0] for r in rows], pa.string()), "category": pa.array([r[1] for r in rows], pa.string()),
        "completion_tokens": pa.array([r[2] for r in rows], pa.int64()),
    })


def test_response_lengths_get_one_panel_per_category():
    rows = [("a", "math", 120), ("a", "math", 4000), ("b", "math", 800), ("b", "code", 2500), ("a", "code", 0)]
    one = response_length_figure(count_lengths(samples([r for r in rows if r[1] == "math"])))
    two = response_length_figure(count_lengths(samples(rows)))
    assert one.startswith(PNG_MAGIC) and two.startswith(PNG_MAGIC)
    assert image_size(two)[0] == pytest.approx(2 * image_size(one)[0], rel=0.01)


def test_lengths_of_another_column_with_the_papers_marks():
    table = samples([("a", "math", 120), ("b", "math", 20000)])
    table = table.rename_columns(["teacher", "category", "response_tokens"])
    figure = response_length_figure(count_lengths(table, "response_tokens"), ylabel="kept samples",
                                    marks=(1024, 10240))
    assert figure.startswith(PNG_MAGIC)


def test_lengths_are_counted_shard_by_shard_exactly():
    """A run's lengths are counted a shard at a time (the driver holds counts, not samples): the counts, and each
    legend's median, are those of all the samples at once."""
    rng = np.random.default_rng(0)
    rows = [(t, c, int(n)) for t, c, n in zip(rng.choice(["a", "b"], 999), rng.choice(["math", "code"], 999),
                                              rng.integers(0, 3000, 999))]
    counts = None
    for start in range(0, len(rows), 100):
        counts = count_lengths(samples(rows[start:start + 100]), counts=counts)
    assert counts == count_lengths(samples(rows))
    for (teacher, category), found in counts.items():
        lengths = [max(n, 1) for t, c, n in rows if (t, c) == (teacher, category)]
        assert sum(found.values()) == len(lengths)
        sorted_lengths = np.array(sorted(found))
        assert _median(sorted_lengths, np.array([found[n] for n in sorted_lengths])) == np.median(lengths)


def test_histograms_get_one_panel_each_even_when_empty():
    one = histograms_figure([("perplexity", "perplexity", "responses", {"a": [2.1, 2.5], "b": [3.0]})])
    two = histograms_figure([("scores", "score", "candidates", {"a": [0.1, 1.0]}, [0, 0.5, 1]),
                             ("pass rate", "share", "queries", {"a": []})])
    assert one.startswith(PNG_MAGIC) and two.startswith(PNG_MAGIC)
    assert image_size(two)[0] == pytest.approx(2 * image_size(one)[0], rel=0.01)


def test_threshold_curves_mark_lower_bounds():
    curves = {"a": [(0.7, 90.0, True), (0.9, 80.0, True), (1.0, 30.0, False)], "b": []}
    assert threshold_figure(curves).startswith(PNG_MAGIC)
    assert threshold_figure({}).startswith(PNG_MAGIC)


def test_no_accepted_samples_still_give_a_figure():
    assert response_length_figure(count_lengths(samples([]))).startswith(PNG_MAGIC)


def test_training_curves():
    steps = [{"step": i + 1, "loss": 2.0 / (i + 1), "lr": 1e-5, "tokens_per_s": 100.0, "mfu": 0.3,
              "packing_efficiency": 0.9} for i in range(5)]
    assert training_figure(steps).startswith(PNG_MAGIC)
    assert training_figure([]).startswith(PNG_MAGIC), "a run resumed after its last step trains no step"
