"""Before a job claims, deletes or computes anything, its paths are checked: every bad input, output or model path is
refused with one line that names the path and what is wrong (a `ConfigError`, which every job turns into exit code
2); good ones, local or on S3 (moto), pass, and the check leaves nothing behind."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from pipeline.checks import check_inputs, check_model, check_output, check_output_file
from pipeline.config import ConfigError

QUERY = json.dumps({"id": "q1", "category": "chat", "prompt": "Explain how a rainbow forms."})


def write(path: Path, data: bytes | str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def parquet(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("prompt", pa.string())])), path)
    return str(path)


def refusal(check, *args) -> str:
    with pytest.raises(ConfigError) as err:
        check(*args)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def folder(tmp: Path, files: dict[str, str]) -> str:
    (tmp / "in").mkdir()
    for name, text in files.items():
        write(tmp / "in" / name, text)
    return str(tmp / "in")


def folder_of_shards(tmp: Path) -> str:
    """As the jobs write them: empty shards, markers and staging areas beside the data."""
    path = folder(tmp, {"_SUCCESS": "", "_staging/notes.txt": "skipped", ".hidden": "skipped"})
    parquet(tmp / "in" / "a.parquet", [])
    parquet(tmp / "in" / "b.parquet", [{"id": "q1", "prompt": "Why is the sky blue?"}])
    return path


def preprocess_output(tmp: Path) -> str:
    return folder(tmp, {"summary.json": "{}", "config.json": "{}", "kept/part-0.jsonl": QUERY,
                        "rejects/part-0.jsonl": QUERY})


def distill_output(tmp: Path) -> str:
    return folder(tmp, {"config.json": "{}", "queries/_SUCCESS": "{}", "queries/part-0.jsonl": QUERY,
                        "teachers/am/accepted/part-0.jsonl": QUERY, "teachers/r1/accepted/part-0.jsonl": QUERY})


GOOD_INPUTS = {
    "jsonl": lambda tmp: write(tmp / "q.jsonl", QUERY + "\n"),
    "jsonl-gz": lambda tmp: write(tmp / "q.jsonl.gz", gzip.compress(QUERY.encode())),
    "parquet": lambda tmp: parquet(tmp / "q.parquet", [{"id": "q1", "prompt": "Why is the sky blue?"}]),
    "rows-after-blank-lines": lambda tmp: write(tmp / "q.jsonl", "\n  \n" + QUERY),
    "malformed-rows-are-rows": lambda tmp: write(tmp / "q.jsonl", '{"unterminated\n'),  # the run quarantines them
    "folder-of-shards": folder_of_shards,
}


@pytest.mark.parametrize("make", GOOD_INPUTS.values(), ids=GOOD_INPUTS.keys())
def test_readable_inputs_with_rows_pass(tmp_path, make):
    check_inputs([make(tmp_path)], {})


BAD_INPUTS = {
    "missing": (lambda tmp: str(tmp / "typo.jsonl"), "typo.jsonl: no such file or folder"),
    "text-file": (lambda tmp: write(tmp / "q.txt", QUERY), "q.txt: not JSONL, JSONL.gz or Parquet"),
    "binary-named-jsonl": (lambda tmp: write(tmp / "q.jsonl", b"\x7fELF\x00\x01" * 10), "q.jsonl: binary content"),
    "not-parquet": (lambda tmp: write(tmp / "q.parquet", QUERY), "q.parquet: Parquet"),
    "not-gzip": (lambda tmp: write(tmp / "q.jsonl.gz", QUERY), "q.jsonl.gz: Not a gzipped file"),
    "empty-file": (lambda tmp: write(tmp / "q.jsonl", ""), "q.jsonl: holds no rows"),
    "blank-lines-only": (lambda tmp: write(tmp / "q.jsonl", "\n \n\t\n"), "q.jsonl: holds no rows"),
    "empty-parquet": (lambda tmp: parquet(tmp / "q.parquet", []), "q.parquet: holds no rows"),
    "empty-folder": (lambda tmp: folder(tmp, {}), "in: the folder holds no data files"),
    "folder-of-markers": (lambda tmp: folder(tmp, {"_SUCCESS": "", "_staging/a.jsonl": QUERY}),
                          "in: the folder holds no data files"),
    "foreign-file-in-folder": (lambda tmp: folder(tmp, {"a.jsonl": QUERY, "notes.md": "#"}), "in/notes.md: not JSONL"),
    "unknown-protocol": (lambda tmp: "s4://bucket/q.jsonl", "s4://bucket/q.jsonl: Protocol not known: s4"),
    # The top of a job's output instead of the dataset inside it: the refusal names the folder to give.
    "preprocess-output": (preprocess_output,
                          "in: a jobs.preprocess output, not one dataset: its queries are {tmp}/in/kept"),
    "distill-output": (distill_output, "its samples are {tmp}/in/teachers/TEACHER/accepted (or filtered, after "
                                       "jobs.filter) with TEACHER one of am, r1; its queries are {tmp}/in/queries"),
    "teacher-folder": (lambda tmp: distill_output(tmp) + "/teachers/am",
                       "am: a teacher's folder of a jobs.distill output: its samples are "
                       "{tmp}/in/teachers/am/accepted"),
}


@pytest.mark.parametrize("make, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_are_refused_with_the_path_and_the_reason(tmp_path, make, message):
    refused = refusal(check_inputs, [make(tmp_path)], {})
    assert refused.startswith("input ") and message.format(tmp=tmp_path) in refused, refused


def test_inputs_on_object_storage_are_checked_the_same_way(s3_server):
    fs = s3fs.S3FileSystem(**s3_server)
    fs.pipe("distillery-test/preflight/q.jsonl", QUERY.encode())
    fs.pipe("distillery-test/preflight/empty.jsonl", b"")
    check_inputs(["s3://distillery-test/preflight/q.jsonl"], s3_server)
    assert refusal(check_inputs, ["s3://distillery-test/preflight/typo.jsonl"], s3_server) == (
        "input s3://distillery-test/preflight/typo.jsonl: no such file or folder"
    )
    assert refusal(check_inputs, ["s3://distillery-test/preflight/empty.jsonl"], s3_server).endswith("no rows")


def test_an_unwritable_output_is_refused(tmp_path, s3_server):
    a_file = write(tmp_path / "file", "x")
    assert refusal(check_output, a_file, {}) == f"output {a_file}: is a file, not a folder"
    assert refusal(check_output, f"{a_file}/out", {}) == f"output {a_file}/out: {a_file} is a file, not a folder"
    assert refusal(check_output, "s3://no-such-bucket/out", s3_server) == (
        "output s3://no-such-bucket/out: cannot write there: The specified bucket does not exist"
    )


def test_a_writable_output_is_left_as_it_was(tmp_path, s3_server):
    check_output(str(tmp_path / "new" / "out"), {})
    assert list(tmp_path.iterdir()) == [], "nothing is created"
    check_output("s3://distillery-test/preflight-out", s3_server)
    assert not s3fs.S3FileSystem(**s3_server).find("distillery-test/preflight-out")


def test_an_output_file_must_not_be_a_folder_and_its_folder_must_take_a_write(tmp_path):
    assert refusal(check_output_file, str(tmp_path), {}) == f"output {tmp_path}: is a folder; name the output file"
    a_file = write(tmp_path / "file", "x")
    assert "is a file, not a folder" in refusal(check_output_file, f"{a_file}/scored.jsonl", {})
    check_output_file(str(tmp_path / "scored.jsonl"), {})


def test_a_model_path_that_is_not_there_is_refused_but_hub_ids_are_left_to_the_loader(tmp_path):
    assert refusal(check_model, "/no/such/model", {}, "teachers.0.model") == (
        "teachers.0.model /no/such/model: no such model folder"
    )
    check_model(str(tmp_path))
    check_model("Qwen/Qwen3-8B")
    check_model("smollm2-135m-instruct")
