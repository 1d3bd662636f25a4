"""Figures that people would rather look at than read, returned as PNG bytes for the run's output folder.

Matplotlib is imported where it is used, with the Agg backend: jobs run on headless nodes.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def new_figure(rows: int, cols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    return figure, axes


def png_bytes(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


# How many samples of each teacher and category have each length: {(teacher, category): {length: samples}}.
LengthCounts = dict[tuple[str, str], Counter]


def count_lengths(samples: pa.Table, column: str = "completion_tokens", counts: LengthCounts | None = None
                  ) -> LengthCounts:
    """`counts` (or new ones) plus the lengths of `samples` (columns teacher, category and `column`). Exact, and as
    large as the distinct lengths rather than the samples, so a run's every sample can pass a shard at a time. A
    length below 1 counts as 1: the figure's axis is logarithmic."""
    counts = {} if counts is None else counts
    grouped = pa.table({
        "teacher": samples.column("teacher"), "category": samples.column("category"),
        "length": pc.max_element_wise(samples.column(column), 1),
    }).group_by(["teacher", "category", "length"]).aggregate([([], "count_all")])
    for teacher, category, length, n in zip(
        *(grouped.column(name).to_pylist() for name in ("teacher", "category", "length", "count_all"))
    ):
        counts.setdefault((teacher, category), Counter())[length] += n
    return counts


def response_length_figure(counts: LengthCounts, ylabel: str = "accepted samples", marks: Sequence[float] = ()
                           ) -> bytes:
    """Distributions of response length (`count_lengths`, by default of accepted samples' `completion_tokens`): one
    panel per category, one histogram per teacher, as the paper compares teachers' datasets. Lengths span orders of
    magnitude, so the bins are logarithmic; `marks` draws dashed vertical lines (the paper's 1,024 and 10,240
    tokens)."""
    teachers = sorted({teacher for teacher, _ in counts})
    categories = sorted({category for _, category in counts})
    figure, axes = new_figure(1, max(len(categories), 1), 4.5 * max(len(categories), 1), 3.6)
    seen = [length for lengths in counts.values() for length in lengths]
    shortest, longest = (min(seen), max(seen)) if seen else (1, 1)
    bins = np.geomspace(shortest, longest * 1.01, 30) if seen else 10
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda x, _: f"{x:g}")
    for ax, category in zip(axes[0], categories):
        for teacher in teachers:
            if found := counts.get((teacher, category)):
                lengths = np.array(sorted(found))
                weights = np.array([found[length] for length in lengths])
                ax.hist(lengths, bins=bins, weights=weights, histtype="step", linewidth=1.5,
                        label=f"{teacher} (n={weights.sum()}, median {_median(lengths, weights):.0f})")
        for mark in marks:
            ax.axvline(mark, color="tab:gray", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)  # 200, not 2×10²
        if longest < 10 * shortest:  # less than a decade: label the minor ticks too
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_title(category)
        ax.set_xlabel("response tokens")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    if not categories:
        axes[0][0].set_title("no samples yet")
    return png_bytes(figure)


def _median(lengths: np.ndarray, weights: np.ndarray) -> float:
    """`np.median` of the samples that `weights` counts of sorted `lengths` stand for."""
    ends = np.cumsum(weights)
    middle = [lengths[np.searchsorted(ends, k, side="right")] for k in ((ends[-1] - 1) // 2, ends[-1] // 2)]
    return sum(middle) / 2


def histograms_figure(panels: Sequence[tuple]) -> bytes:
    """Side-by-side histograms, one outline per series: each panel is (title, xlabel, ylabel, {label: values}) and
    optionally its bin edges (else 30 bins over the panel's range)."""
    figure, axes = new_figure(1, len(panels), 5.5 * len(panels), 3.8)
    for ax, (title, xlabel, ylabel, series, *bins) in zip(axes[0], panels):
        everything = [v for values in series.values() for v in values]
        edges = bins[0] if bins else (np.linspace(min(everything), max(everything) + 1e-9, 31) if everything else 10)
        for label, values in series.items():
            if values:
                ax.hist(values, bins=edges, histtype="step", linewidth=1.5, label=f"{label} (n={len(values)})")
        ax.set_title(title if everything else f"{title}: nothing yet")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if everything:
            ax.legend(fontsize=8)
    return png_bytes(figure)


def threshold_figure(curves: dict[str, Sequence[tuple[float, float, bool]]]) -> bytes:
    """Accepted share (%) against the verify threshold, one line per series of (threshold, share, exact) points;
    a point that is only a lower bound (exact false) is drawn hollow."""
    figure, axes = new_figure(1, 1, 6.5, 4.0)
    ax = axes[0][0]
    for label, points in curves.items():
        line, = ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
        for threshold, share, exact in points:
            ax.plot([threshold], [share], marker="o", color=line.get_color(),
                    markerfacecolor=line.get_color() if exact else "white")
    ax.set_xlabel("verify threshold")
    ax.set_ylabel("queries accepted (%)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return png_bytes(figure)


def training_figure(steps: Sequence[dict[str, Any]]) -> bytes:
    """Loss and learning rate, tokens/s, MFU and packing efficiency per optimizer step."""
    figure, axes = new_figure(2, 2, 10, 6.5)
    step = [row["step"] for row in steps]
    panels = [
        ("loss", "loss (token mean)"), ("tokens_per_s", "tokens/s, all ranks"),
        ("mfu", "MFU"), ("packing_efficiency", "packing efficiency"),
    ]
    for ax, (key, title) in zip(axes.flat, panels):
        ax.plot(step, [row[key] for row in steps], marker="." if len(step) < 50 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
    lr = axes[0][0].twinx()
    lr.plot(step, [row["lr"] for row in steps], color="tab:gray", linestyle="--", linewidth=1)
    lr.set_ylabel("learning rate", color="tab:gray")
    return png_bytes(figure)
