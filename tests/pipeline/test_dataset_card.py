"""The dataset card of a filtered folder: Hugging Face front matter whose `default` config names only the Parquet
shards, so `datasets` loads the folder with the card (and any staging folder) beside them; then what made the data."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import FilterConfig
from pipeline.dataset_card import dataset_card, size_category
from pipeline.quality import FILTERED_SCHEMA, REASONS

SUMMARY = {
    "teacher": "smollm2", "config_hash": "f00dfeed0001", "distill_config_hash": "d15711100002", "samples": 5,
    "kept": 2, "rejected": {reason: 1 if reason != "corpus_boilerplate" else 0 for reason in REASONS},
    "thresholds": {"max_tokens": 32768, "n": 20, "max_repeats": 20, "corpus_max_responses": None, "max_ppl": 12.5,
                   "max_ppl_percentile": 95.0},
    "kept_ppl": {"mean": 3.5, "median": 3.5, "min": 3.0, "max": 4.0},
    "kept_response_tokens": {"mean": 120.0, "median": 120.0, "min": 100, "max": 140},
}
CONFIG = FilterConfig.model_validate({"storage_options": {"key": "AKIA-SECRET", "secret": "hunter2"}})


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_front_matter_names_the_parquet_shards_license_task_and_size():
    meta = front_matter(dataset_card(SUMMARY, CONFIG.model_dump(mode="json"), FILTERED_SCHEMA))
    assert meta["configs"] == [{"config_name": "default", "data_files": "*.parquet"}]
    assert meta["license"] == "other" and meta["license_name"]
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]


def test_the_body_has_the_schema_counts_hashes_thresholds_and_distributions():
    card = dataset_card(SUMMARY, CONFIG.model_dump(mode="json"), FILTERED_SCHEMA)
    for text in ["| ppl | double |", "| max_ngram_count | int64 |", "| kept (this dataset) | 2 |",
                 "| rejected: too_long | 1 |", "d15711100002", "f00dfeed0001", '"max_ppl": 12.5',
                 "| perplexity | 3.5 | 3.5 | 3 | 4 |", "| response tokens | 120 | 120 | 100 | 140 |",
                 "max_ppl_percentile: null", "student: smollm2-135m-instruct"]:
        assert text in card, text


def test_credentials_never_reach_the_card():
    card = dataset_card(SUMMARY, CONFIG.model_dump(mode="json"), FILTERED_SCHEMA)
    assert "hunter2" not in card and "AKIA" not in card and "storage_options" not in card


@pytest.mark.parametrize("rows, bucket", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M"),
                                          (20_000_000, "n>10M")])
def test_size_categories_follow_the_hubs_buckets(rows, bucket):
    assert size_category(rows) == bucket


def test_datasets_loads_the_folder_and_only_its_shards(tmp_path):
    import datasets

    rows = [{name: None for name in FILTERED_SCHEMA.names} | {"id": f"s{i}", "ppl": 3.0 + i, "response_tokens": 7,
                                                              "max_ngram_count": 1, "messages": []} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows[:2], schema=FILTERED_SCHEMA), tmp_path / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:], schema=FILTERED_SCHEMA), tmp_path / "part-1.parquet")
    (tmp_path / "_staging").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:1], schema=FILTERED_SCHEMA), tmp_path / "_staging" / "half.parquet")
    (tmp_path / "README.md").write_text(dataset_card(SUMMARY, CONFIG.model_dump(mode="json"), FILTERED_SCHEMA))
    cache = str(tmp_path.parent / "hf-cache")
    by_glob = datasets.load_dataset("parquet", data_files=str(tmp_path / "*.parquet"), split="train", cache_dir=cache)
    by_card = datasets.load_dataset(str(tmp_path), split="train", cache_dir=cache)
    for loaded in (by_glob, by_card):
        assert sorted(loaded["id"]) == ["s0", "s1", "s2"]
        assert loaded.column_names == FILTERED_SCHEMA.names
