"""The Hugging Face dataset card (`README.md`) written into each teacher's `filtered/` folder.

YAML front matter first (a `default` config over `*.parquet`, so `datasets.load_dataset(folder)` reads only the
shards, never the card or a staging folder; license left for the publisher to fill in; task category and size
bucket), then the schema, the counts by filter reason, the filter config and the distill config hash that made the
data, and the kept samples' length and perplexity summaries. Pure: it formats what `jobs.filter` measured.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import yaml

_SIZE_BUCKETS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                 (10_000_000, "1M<n<10M")]


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket for a row count."""
    return next((label for limit, label in _SIZE_BUCKETS if rows < limit), "n>10M")


def dataset_card(summary: dict[str, Any], filter_config: dict[str, Any], schema: pa.Schema) -> str:
    """`summary` is a teacher's `filter_summary.json`; `filter_config` the resolved FilterConfig as JSON, whose
    storage options (credentials) and Ray settings are left out of the card."""
    filter_config = {k: v for k, v in filter_config.items() if k not in ("storage_options", "ray")}
    front_matter = {
        "configs": [{"config_name": "default", "data_files": "*.parquet"}],
        # A placeholder: the publisher names the license of the teacher's outputs and of the prompts.
        "license": "other",
        "license_name": "to-be-decided",
        "task_categories": ["text-generation"],
        "language": ["en"],
        "size_categories": [size_category(summary["kept"])],
        "tags": ["reasoning", "distillation", "synthetic"],
    }
    rejected = summary["rejected"]
    lines = [
        "---", yaml.safe_dump(front_matter, sort_keys=False).strip(), "---", "",
        f"# Distilled reasoning samples: teacher `{summary['teacher']}`", "",
        "Verified responses in the format `<think>…</think>\\n<answer>…</answer>`, after post-generation quality "
        "filtering (`python -m jobs.filter`): perplexity under a reference model, token n-gram repetition, "
        "corpus-wide boilerplate, length in the student's tokens and the structure check.", "",
        "## Counts", "",
        "| outcome | samples |", "|---|---|",
        f"| accepted by distill | {summary['samples']} |",
        f"| kept (this dataset) | {summary['kept']} |",
        *[f"| rejected: {reason} | {n} |" for reason, n in rejected.items()],
        "",
        "## Schema", "",
        "| column | type |", "|---|---|",
        *[f"| {field.name} | {field.type} |" for field in schema],
        "",
        "`ppl` is the response's perplexity under the reference model (null when perplexity was off), "
        "`response_tokens` the response's length in the student's tokens, `max_ngram_count` how often its most "
        "frequent token n-gram occurs in it.", "",
        "## Lengths and perplexity of the kept samples", "",
        "| measure | mean | median | min | max |", "|---|---|---|---|---|",
        *[_row(label, summary[key]) for label, key in [("response tokens", "kept_response_tokens"),
                                                        ("perplexity", "kept_ppl")]],
        "",
        "## Provenance", "",
        f"- distill config hash: `{summary['distill_config_hash']}`",
        f"- filter config hash: `{summary['config_hash']}`",
        "- thresholds applied (a percentile resolved to its value):", "",
        "```json", json.dumps(summary["thresholds"], indent=2), "```", "",
        "- filter config:", "",
        "```yaml", yaml.safe_dump(filter_config, sort_keys=False).strip(), "```", "",
    ]
    return "\n".join(lines)


def _row(label: str, distribution: dict[str, float] | None) -> str:
    if distribution is None:
        return f"| {label} | – | – | – | – |"
    return f"| {label} | {distribution['mean']:g} | {distribution['median']:g} | {distribution['min']:g} | " \
           f"{distribution['max']:g} |"
