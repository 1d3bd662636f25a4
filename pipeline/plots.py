"""Figures that people would rather look at than read, returned as PNG bytes for the run's output folder.

Matplotlib is imported where it is used, with the Agg backend: jobs run on headless nodes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa


def _figure(rows: int, cols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    return figure, axes


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def response_length_figure(samples: pa.Table) -> bytes:
    """Distributions of response length (`completion_tokens`) of accepted samples: one panel per category, one
    histogram per teacher, as the paper compares teachers' datasets. `samples` has columns teacher, category and
    completion_tokens. Lengths span orders of magnitude, so the bins are logarithmic."""
    teachers = sorted(set(samples.column("teacher").to_pylist()))
    categories = sorted(set(samples.column("category").to_pylist()))
    figure, axes = _figure(1, max(len(categories), 1), 4.5 * max(len(categories), 1), 3.6)
    lengths = np.maximum(np.asarray(samples.column("completion_tokens").to_pylist(), dtype=float), 1)
    bins = np.geomspace(lengths.min(), lengths.max() * 1.01, 30) if len(lengths) else 10
    teacher_of = np.asarray(samples.column("teacher").to_pylist(), dtype=object)
    category_of = np.asarray(samples.column("category").to_pylist(), dtype=object)
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda x, _: f"{x:g}")
    for ax, category in zip(axes[0], categories):
        for teacher in teachers:
            chosen = lengths[(teacher_of == teacher) & (category_of == category)]
            if len(chosen):
                ax.hist(chosen, bins=bins, histtype="step", linewidth=1.5,
                        label=f"{teacher} (n={len(chosen)}, median {np.median(chosen):.0f})")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)  # 200, not 2×10²
        if len(lengths) and lengths.max() < 10 * lengths.min():  # less than a decade: label the minor ticks too
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_title(category)
        ax.set_xlabel("response tokens")
        ax.set_ylabel("accepted samples")
        ax.legend(fontsize=8)
    if not categories:
        axes[0][0].set_title("no accepted samples yet")
    return _png(figure)


def training_figure(steps: Sequence[dict[str, Any]]) -> bytes:
    """Loss and learning rate, tokens/s, MFU and packing efficiency per optimizer step."""
    figure, axes = _figure(2, 2, 10, 6.5)
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
    return _png(figure)
