"""Resuming `jobs.preprocess`: a run reuses the committed steps of an unfinished run up to the first step whose inputs
or settings changed, and computes the rest."""

import json

import pytest

from pipeline.config import PreprocessConfig
from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.resume import (
    STEPS,
    StepMarker,
    choose_staging,
    commit_marker,
    input_files,
    plan_steps,
    resume_from,
    staged_markers,
    step_folder,
    step_settings,
)
from pipeline.storage import Store

FILES = [["/data/corpus.jsonl", 1200, "1700000000.0"]]
BENCHMARKS = {"math500.jsonl": [BenchmarkItem("m-1", "math500", "what is 1 + 1?")]}
BASE = {"dedup": {"partitions": 4}, "ray": {"dashboard": False}}


def plan(config: dict | None = None, files=FILES, benchmarks=BENCHMARKS):
    return plan_steps(step_settings(PreprocessConfig.model_validate(config or BASE), files, benchmarks))


def committed(steps) -> dict[str, StepMarker]:
    """Markers as a finished run of `steps` left them."""
    return {s.name: StepMarker(s.name, s.hash, {"open": 3}, 1.0, "2025-01-01T00:00:00+00:00") for s in steps}


def with_(**changes) -> dict:
    """BASE with nested changes given as `path__to__field=value`."""
    config = json.loads(json.dumps(BASE))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def test_every_step_runs_when_there_is_something_to_do():
    assert [s.name for s in plan()] == list(STEPS)


@pytest.mark.parametrize("config, benchmarks, steps", [
    (with_(dedup__near=None), BENCHMARKS, ["parse_filter", "exact_dedup", "decontaminate", "embedding"]),
    (BASE, {}, ["parse_filter", "exact_dedup", "near_dedup"]),
    (with_(decontamination__embedding=None), BENCHMARKS, ["parse_filter", "exact_dedup", "near_dedup",
                                                          "decontaminate"]),
], ids=["no-near-dedup", "benchmarks-none", "no-embedding"])
def test_a_step_with_nothing_to_do_is_left_out(config, benchmarks, steps):
    assert [s.name for s in plan(config, benchmarks=benchmarks)] == steps


# Each row: what changed between the killed run and this one, and how many leading steps this one reuses.
CHANGES = {
    "nothing": (BASE, FILES, BENCHMARKS, 5),
    "where-it-runs": (with_(ray__num_cpus=8, storage_options={"endpoint_url": "http://x"}), FILES, BENCHMARKS, 5),
    "embedding-pool-size": (with_(decontamination__embedding={"replicas": 2, "max_replicas": 4, "num_cpus": 2}),
                            FILES, BENCHMARKS, 5),
    "embedding-threshold": (with_(decontamination__embedding__threshold=0.9), FILES, BENCHMARKS, 4),
    "embedding-model": (with_(decontamination__embedding={"model": "BAAI/bge-m3", "threshold": 0.8}), FILES,
                        BENCHMARKS, 4),
    "ngram-threshold": (with_(decontamination__ngram_threshold=0.7), FILES, BENCHMARKS, 3),
    "benchmark-item-text": (BASE, FILES, {"math500.jsonl": [BenchmarkItem("m-1", "math500", "what is 2 + 2?")]}, 3),
    "another-benchmark-file": (BASE, FILES, {**BENCHMARKS, "aime.jsonl": [BenchmarkItem("a", "aime", "x")]}, 3),
    "near-threshold": (with_(dedup__near__threshold=0.7), FILES, BENCHMARKS, 2),
    "shingle-size": (with_(dedup__near__shingle_size=3), FILES, BENCHMARKS, 0),  # signatures are made while parsing
    "partitions": (with_(dedup__partitions=8), FILES, BENCHMARKS, 0),
    "filter": (with_(filters__min_chars=20), FILES, BENCHMARKS, 0),
    "max-row-bytes": (with_(max_row_bytes=4096), FILES, BENCHMARKS, 0),
    "input-rewritten": (BASE, [["/data/corpus.jsonl", 1200, "1700000999.0"]], BENCHMARKS, 0),
    "another-input": (BASE, FILES + [["/data/more.jsonl", 10, "1"]], BENCHMARKS, 0),
}


@pytest.mark.parametrize("config, files, benchmarks, reused", CHANGES.values(), ids=CHANGES.keys())
def test_a_run_reuses_the_steps_before_the_first_one_its_change_touches(config, files, benchmarks, reused):
    killed_run = committed(plan())
    assert resume_from(plan(config, files, benchmarks), killed_run) == reused


def test_a_run_continues_from_the_first_step_the_killed_run_did_not_commit():
    steps = plan()
    markers = committed(steps)
    del markers["near_dedup"]  # a later step's marker cannot stand in for it
    assert resume_from(steps, markers) == 2
    assert resume_from(steps, {}) == 0


def test_turning_a_step_on_recomputes_from_it_or_from_where_its_input_is_made():
    assert resume_from(plan(), committed(plan(with_(decontamination__embedding=None)))) == 4
    assert resume_from(plan(), committed(plan(with_(dedup__near=None)))) == 0, "signatures are made while parsing"


def test_the_unfinished_run_with_the_most_reusable_steps_is_continued():
    steps = plan()
    runs = {
        "20250101T000000-aaaaaa": committed(steps[:4]),
        "20250102T000000-bbbbbb": committed(steps[:2]),
        "20250103T000000-cccccc": committed(plan(with_(filters__min_chars=20))),  # nothing reusable
    }
    assert choose_staging(steps, runs) == ("20250101T000000-aaaaaa", 4)
    runs["20250104T000000-dddddd"] = committed(steps[:4])
    assert choose_staging(steps, runs) == ("20250104T000000-dddddd", 4), "the newest among equals"
    assert choose_staging(steps, {"20250103T000000-cccccc": runs["20250103T000000-cccccc"]}) == (None, 0)
    assert choose_staging(steps, {}) == (None, 0)


def test_committed_markers_are_found_in_every_unfinished_run(tmp_path):
    store = Store(str(tmp_path))
    steps = plan()
    for tag, done in [("20250101T000000-aaaaaa", steps[:3]), ("20250102T000000-bbbbbb", steps[:1])]:
        for marker in committed(done).values():
            commit_marker(store, f"_staging/{tag}", marker, {})
    (tmp_path / "_staging" / "20250102T000000-bbbbbb" / "steps" / "exact_dedup").mkdir(parents=True)  # killed in it
    runs = staged_markers(store)
    assert {tag: sorted(markers) for tag, markers in runs.items()} == {
        "20250101T000000-aaaaaa": ["exact_dedup", "near_dedup", "parse_filter"],
        "20250102T000000-bbbbbb": ["parse_filter"],
    }
    assert runs["20250101T000000-aaaaaa"]["near_dedup"] == committed(steps)["near_dedup"]
    assert choose_staging(steps, runs) == ("20250101T000000-aaaaaa", 3)
    marker = tmp_path / step_folder("_staging/20250101T000000-aaaaaa", "parse_filter") / "_SUCCESS"
    assert json.loads(marker.read_text())["outcomes"] == {"open": 3}


def test_a_marker_this_code_cannot_read_leaves_its_step_to_be_computed(tmp_path):
    store = Store(str(tmp_path))
    folder = tmp_path / "_staging" / "20250101T000000-aaaaaa" / "steps" / "parse_filter"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").write_text(json.dumps({"step": "parse_filter", "rows": 3}))
    assert staged_markers(store) == {}


def test_an_input_file_rewritten_since_the_killed_run_is_seen(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"id": "a"}\n')
    (tmp_path / "in" / "_SUCCESS").write_text("")  # not data
    single = tmp_path / "b.jsonl"
    single.write_text('{"id": "b"}\n')
    before = input_files([str(tmp_path / "in"), str(single)], {})
    assert [(path.rsplit("/", 1)[1], size) for path, size, _ in before] == [("a.jsonl", 12), ("b.jsonl", 12)]
    single.write_text('{"id": "bb"}\n')
    assert input_files([str(tmp_path / "in"), str(single)], {}) != before
