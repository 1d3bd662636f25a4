"""A sample whose messages cannot be tokenized is counted and left out; the rest of its source trains."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.train_data import check_tokenized, tokenize_batch
from pipeline.config import ConfigError, TrainConfig
from pipeline.packing import TOKENIZED_SCHEMA
from pipeline.storage import Store
from tests.tiny_student import save_tiny_student

GOOD = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "<think>2+3</think> 5"}]


def test_a_row_that_cannot_be_tokenized_keeps_its_id_and_reason(tmp_path):
    model = str(save_tiny_student(tmp_path / "student"))
    batch = pa.table({"id": ["good", "broken"], "messages": [GOOD, None], "source": ["a", "a"]})
    rows = tokenize_batch(batch, model).to_pylist()
    assert rows[0]["error"] is None and len(rows[0]["input_ids"]) == len(rows[0]["assistant_mask"]) > 0
    assert rows[1]["id"] == "broken" and rows[1]["input_ids"] == [] and rows[1]["assistant_mask"] == []
    assert rows[1]["error"].startswith("TypeError")


def tokenized_source(tmp_path, errors):
    table = pa.Table.from_pylist(
        [{"id": str(i), "input_ids": [] if e else [1, 2], "assistant_mask": [] if e else [False, True], "error": e}
         for i, e in enumerate(errors)], schema=TOKENIZED_SCHEMA,
    )
    (tmp_path / "tokenized" / "source=a").mkdir(parents=True)
    pq.write_table(table, tmp_path / "tokenized" / "source=a" / "part-0.parquet")
    config = TrainConfig.model_validate({"model": "m", "data": {"sources": [{"name": "a", "path": "x"}]},
                                         "output": str(tmp_path)})
    return config, Store(str(tmp_path))


def test_some_untokenizable_rows_are_reported_and_the_run_goes_on(tmp_path, capsys):
    check_tokenized(*tokenized_source(tmp_path, [None, "TypeError: bad", None]))
    assert "data.sources.a: 1 of 3 samples could not be tokenized, e.g. 1: TypeError: bad" in capsys.readouterr().out


def test_a_source_of_which_nothing_tokenizes_is_an_error_naming_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="2 of 2 samples could not be tokenized, e.g. 0: ValueError: the chat tem"):
        check_tokenized(*tokenized_source(tmp_path, ["ValueError: the chat template", "ValueError: the chat template"]))
