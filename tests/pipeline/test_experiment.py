"""The experiment's phases and plan (pipeline/experiment.py): what each job is given, which phases a run reuses,
resumes or runs when settings change, and config errors that name the field by its path in the experiment file."""

import copy
import gzip
import json

import pyarrow as pa
import pytest

from pipeline.config import (
    ConfigError, DistillConfig, EvaluateConfig, ExperimentConfig, FilterConfig, PreprocessConfig, QuerySourceConfig,
    TrainConfig, load_config, parse_config,
)
from pipeline.experiment import Runner, changed_fields, experiment_phases, format_plan, plan_phases, sample_lines
from pipeline.eval_metrics import benchmark_metrics
from pipeline.experiment_report import table1_markdown, table1_section, tokens_section, write_experiment_report
from pipeline.quality import FILTERED_SCHEMA
from pipeline.schema import EVAL_SAMPLE_SCHEMA, QUERY_SCHEMA, SAMPLE_SCHEMA, Message, Query, Sample
from pipeline.storage import Store

EXPERIMENT = {
    "output": "/data/experiment",
    "queries": [{"path": "/data/gsm8k_train.jsonl", "limit": 8}, {"path": "/data/math_train.jsonl"}],
    "distill": {
        "teachers": [
            {"name": "cool", "model": "smollm2-135m-instruct", "response_format": "plain",
             "sampling": {"default": {"temperature": 0.3, "max_tokens": 64}}},
            {"name": "hot", "model": "smollm2-135m-instruct", "response_format": "plain",
             "sampling": {"default": {"temperature": 1.0, "max_tokens": 64}}},
        ],
        "verifiers": {"replicas": 1, "code": False},
    },
    "preprocess": {"decontamination": {"embedding": None}},
    "filter": {"perplexity": None},
    "train": {"model": "/models/tiny", "data": {"max_seq_len": 512}, "epochs": 1, "global_batch_samples": 2,
              "mix": True},
    "evaluate": {
        "student": {"response_format": "answer_only", "sampling": {"max_tokens": 32}},
        "benchmarks": [{"name": "gsm8k", "path": "/data/gsm8k_test.jsonl", "limit": 2, "samples": 2}],
        "ks": [1, 2],
    },
}
ORDER = ["preprocess", "distill", "filter", "train/cool", "train/hot", "train/mix", "evaluate", "report"]
# Jobs that refuse a folder holding another config's run; preprocess replaces its output whole, filter re-decides in
# place, the report is written again.
CLEARED = ["distill", "train/cool", "train/hot", "train/mix", "evaluate"]


def phases_of(raw=EXPERIMENT, **changes):
    raw = copy.deepcopy(raw)
    for path, value in changes.items():  # distill__teachers__0__sampling: the dotted path, with __
        *parents, last = path.split("__")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return experiment_phases(parse_config(ExperimentConfig, raw), "experiment.yaml")


def finished(phases, **status):
    """The records a run of `phases` left: every phase finished, unless `status` names it (running) or None."""
    records = {}
    for phase in phases:
        state = status.get(phase.name.replace("/", "_"), "finished")
        if state is None:
            continue
        records[phase.name] = {"key": phase.key, "job_hash": phase.job_hash, "settings": phase.settings,
                               "upstream": {u: next(p.key for p in phases if p.name == u) for u in phase.upstream},
                               "status": state, "finished_at": "2026-01-01T00:00:00+00:00"}
    return records


def actions(steps):
    return {s.phase.name: s.action for s in steps}


def cleared(steps):
    return sorted(s.phase.name for s in steps if s.clear)


# ---- what each job is given ----------------------------------------------------------------------------------------


def test_phases_run_in_order_each_fed_by_the_one_before():
    phases = {p.name: p for p in phases_of()}
    assert list(phases) == ORDER
    assert phases["distill"].config.input.paths == ["/data/experiment/preprocess/kept"]
    assert phases["distill"].config.output == "/data/experiment/distill"
    assert phases["filter"].args == ["--run", "/data/experiment/distill"]
    assert phases["filter"].config.student == "/models/tiny", "lengths in the student's tokens"
    sources = phases["train/cool"].config.data.sources
    assert [s.path for s in sources] == ["/data/experiment/distill/teachers/cool/filtered"]
    assert [s.name for s in phases["train/mix"].config.data.sources] == ["cool", "hot"]
    assert phases["train/hot"].config.output == "/data/experiment/train/hot"
    models = {m.name: m.model for m in phases["evaluate"].config.models}
    assert models == {"cool": "/data/experiment/train/cool", "hot": "/data/experiment/train/hot",
                      "mix": "/data/experiment/train/mix", "base": "/models/tiny"}
    assert phases["report"].upstream == ("filter", "train/cool", "train/hot", "train/mix", "evaluate")


def test_query_files_with_a_limit_are_sampled_and_preprocess_decontaminates_against_the_evaluated_benchmarks():
    preprocess = phases_of()[0]
    sample = "/data/experiment/experiment/queries/0-gsm8k_train.jsonl"
    assert preprocess.args == ["--input", sample, "/data/math_train.jsonl", "--output", "/data/experiment/preprocess"]
    assert [(q.path, q.limit, target) for q, target in preprocess.samples] == [("/data/gsm8k_train.jsonl", 8, sample)]
    assert preprocess.config.decontamination.benchmarks == ["/data/gsm8k_test.jsonl"]


def test_the_base_model_takes_the_students_settings_with_its_overrides_or_is_left_out():
    evaluate = phases_of(evaluate__base={"response_format": "plain"})[-2].config
    base = next(m for m in evaluate.models if m.name == "base")
    assert (base.response_format, base.sampling.max_tokens) == ("plain", 32)
    assert "base" not in [m.name for m in phases_of(evaluate__base=None)[-2].config.models]


def test_keys_do_not_depend_on_where_the_output_root_is():
    assert [p.key for p in phases_of()] == [p.key for p in phases_of(output="s3://bucket/elsewhere")]


# ---- the plan ------------------------------------------------------------------------------------------------------


def test_a_first_run_runs_everything_and_a_second_reuses_everything():
    phases = phases_of()
    assert set(actions(plan_phases(phases, {})).values()) == {"run"}
    assert set(actions(plan_phases(phases, finished(phases))).values()) == {"reuse"}


@pytest.mark.parametrize(("change", "value", "rerun", "clear"), [
    ("evaluate__ks", [1], ["evaluate", "report"], []),
    ("evaluate__student__sampling", {"max_tokens": 48}, ["evaluate", "report"], ["evaluate"]),
    ("evaluate__benchmarks__0__limit", 3, ["evaluate", "report"], []),
    ("filter__max_tokens", 400, ORDER[2:], CLEARED[1:]),
    ("train__epochs", 2, ORDER[3:], CLEARED[1:]),
    ("distill__teachers__1__sampling", {"default": {"temperature": 0.9, "max_tokens": 64}}, ORDER[1:], CLEARED),
    ("queries__0__limit", 16, ORDER, CLEARED),
], ids=["metrics-only", "eval-sampling", "eval-limit", "filter", "train", "a-teacher", "queries"])
def test_a_changed_setting_reruns_its_phase_and_those_after_it(change, value, rerun, clear):
    before = phases_of()
    steps = plan_phases(phases_of(**{change: value}), finished(before))
    assert [name for name, action in actions(steps).items() if action != "reuse"] == rerun
    assert cleared(steps) == sorted(clear), "cleared only where its job would refuse the folder or its inputs changed"


def test_the_plan_names_the_changed_setting():
    steps = plan_phases(phases_of(evaluate__ks=[1]), finished(phases_of()))
    plan = format_plan(steps)
    assert "evaluate    run     settings changed: ks" in plan
    assert "distill     reuse   finished 2026-01-01" in plan


def test_scale_settings_change_nothing():
    before = phases_of()
    engine = {"replicas": 3, "batches_in_flight": 8}
    teachers = copy.deepcopy(EXPERIMENT["distill"]["teachers"])
    teachers[0]["engine"] = engine
    steps = plan_phases(phases_of(distill__teachers=teachers, ray={"num_cpus": 8}), finished(before))
    assert set(actions(steps).values()) == {"reuse"}


def test_a_phase_killed_midway_resumes_and_the_finished_ones_before_it_are_reused():
    phases = phases_of()
    steps = plan_phases(phases, finished(phases, train_hot="running", train_mix=None, evaluate=None, report=None))
    assert actions(steps) == {"preprocess": "reuse", "distill": "reuse", "filter": "reuse", "train/cool": "reuse",
                              "train/hot": "resume", "train/mix": "run", "evaluate": "run", "report": "run"}
    assert cleared(steps) == [], "the killed job continues from its own checkpoint"


def test_a_phase_killed_then_changed_is_started_over_in_a_cleared_folder():
    phases = phases_of()
    steps = plan_phases(phases_of(train__epochs=3), finished(phases, train_hot="running"))
    assert actions(steps)["train/hot"] == "run" and "train/hot" in cleared(steps)


@pytest.mark.parametrize(("old", "new", "changed"), [
    ({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 3]}}, ["b.c.1"]),
    ({"a": [1]}, {"a": [1, 2]}, ["a"]),
    ({"a": 1}, {"a": 1, "b": 2}, ["b"]),
    (None, {"a": 1}, ["<all>"]),
], ids=["list-item", "list-length", "new-key", "no-record"])
def test_changed_fields(old, new, changed):
    assert changed_fields(old, new) == changed


# ---- config errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "value", "message"), [
    ("distill__teachers__0__model", None, "distill.teachers.0.model: Input should be a valid string"),
    ("distill__output", "/x", "distill.output: derived by the experiment"),
    ("distill__input", {"paths": ["/x"]}, "distill.input.paths: derived by the experiment"),
    ("distill__ray", {}, "distill.ray: set once, at the top of the experiment"),
    ("train__data", {"sources": []}, "train.data.sources: derived by the experiment"),
    ("train__epochs", 0, "train.epochs: Input should be greater than or equal to 1"),
    ("train__mix", "yes", "train.mix: Input should be a valid boolean"),
    ("filter__ngram", {"n": 1}, "filter.ngram.n: Input should be greater than or equal to 2"),
    ("evaluate__student", {"sampling": {"n": 4}}, "evaluate.student.sampling: Value error, n: samples per problem"),
    ("evaluate__student", {"model": "x"}, "evaluate.student.model: derived by the experiment"),
    ("evaluate__benchmarks__0__name", "gsm9k", "evaluate.benchmarks.0.name: Value error, unknown benchmark"),
    ("preprocess__dedup", {"partitions": 0}, "preprocess.dedup.partitions: Input should be greater than or equal"),
    ("queries__1__limit", 5, "queries.1.limit: samples the first lines of a JSONL file"),
], ids=lambda v: v if isinstance(v, str) and "__" in v else None)
def test_a_bad_field_is_named_by_its_path_in_the_experiment(change, value, message):
    raw = copy.deepcopy(EXPERIMENT)
    raw["queries"][1]["path"] = "/data/math_train.parquet"
    with pytest.raises(ConfigError) as err:
        phases_of(raw, **{change: value})
    assert message in str(err.value)
    assert str(err.value).startswith("experiment.yaml: invalid config")


def test_an_unknown_section_is_refused_by_name():
    with pytest.raises(ConfigError, match="evalute: Extra inputs are not permitted"):
        parse_config(ExperimentConfig, {**EXPERIMENT, "evalute": {}})


# ---- sampling query files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["q.jsonl", "q.jsonl.gz"])
def test_a_query_sample_is_the_files_first_lines(tmp_path, name):
    lines = [json.dumps({"question": f"q{i}", "answer": "#### 1"}) + "\n" for i in range(10)]
    data = "".join(lines).encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    target = tmp_path / "out" / "sample.jsonl"
    sample_lines(QuerySourceConfig(path=str(tmp_path / name), limit=3), str(target), {})
    assert target.read_text() == "".join(lines[:3])
    assert [p.name for p in target.parent.iterdir()] == ["sample.jsonl"]


# ---- the report's tables -------------------------------------------------------------------------------------------


def test_table1_has_a_row_per_student_and_the_base_model_and_a_column_per_benchmark():
    scores = {"pass@1": 12.5, "pass@1_stderr": 3.25, "problems": 8, "samples": 16, "mean_response_tokens": 140.5,
              "median_response_tokens": 130, "truncation_rate": 0.0}
    results = {"benchmarks": ["gsm8k", "math500"], "models": {
        "cool": {"trained_on": ["cool"], "benchmarks": {"gsm8k": scores, "math500": None}},
        "base": {"trained_on": [], "benchmarks": {"gsm8k": scores, "math500": scores}},
    }}
    section = table1_section(results)
    (table,) = section.tables
    assert table["columns"] == ["model", "trained on", "gsm8k", "math500"]
    assert table["rows"] == [["cool", "cool", "12.5 ± 3.2", None],
                             ["base", "— (base model)", "12.5 ± 3.2", "12.5 ± 3.2"]]
    assert tokens_section(results).tables[0]["rows"] == [["cool", 140.5, None], ["base", 140.5, 140.5]]
    assert table1_markdown(results).splitlines()[2:] == [
        "| cool | cool | 12.5 ± 3.2 | 140 | — | — |",
        "| base | — (base model) | 12.5 ± 3.2 | 140 | 12.5 ± 3.2 | 140 |",
    ]


# ---- what each job reads -------------------------------------------------------------------------------------------

JOB_CONFIGS = {"jobs.preprocess": PreprocessConfig, "jobs.distill": DistillConfig, "jobs.filter": FilterConfig,
               "jobs.train": TrainConfig, "jobs.evaluate": EvaluateConfig}


def test_each_job_is_started_on_a_config_file_that_reads_back_as_its_phase_config(tmp_path):
    phases = phases_of(output=str(tmp_path / "out"))
    runner = Runner(Store(str(tmp_path / "out")), progress=False)
    for phase in phases[:-1]:
        command = runner.command(phase)
        assert command[1:3] == ["-m", phase.job] and command[3] == "--config"
        assert load_config(JOB_CONFIGS[phase.job], command[4]) == phase.config, phase.name
        assert command[4] == str(tmp_path / "out" / "experiment" / "phases" / f"{phase.name}.yaml")
        assert command[5:] == [*phase.args, *(["--no-progress"] if phase.job != "jobs.train" else [])]


def write_finished_experiment(root):
    """The outputs of a finished experiment, as the jobs lay them out: a distill run of 4 queries by two teachers
    (cool accepted 3, hot 1), filtered; a student per teacher; both and the base model evaluated on two benchmarks."""
    queries = [Query(id=f"q{i}", category="math", prompt=f"What is {i} + 1?", reference={"answer": str(i + 1)})
               for i in range(4)]
    distill = Store(str(root / "distill"))
    config = parse_config(DistillConfig, {"input": {"paths": ["q.jsonl"]}, "output": distill.url, "teachers": [
        {"name": name, "model": "smollm2-135m-instruct"} for name in ("cool", "hot")]})
    distill.claim(config.config_hash(), config.model_dump(mode="json"))
    distill.write_shard("queries", "part-0.parquet",
                        pa.Table.from_pylist([q.to_row() for q in queries], schema=QUERY_SCHEMA))
    distill.write_text("queries/_SUCCESS", "")
    answer = Message(role="assistant", content="<think>t</think><answer>1</answer>")
    for teacher, accepted, tokens, ppl in (("cool", 3, 100, 2.5), ("hot", 1, 300, 4.0)):
        samples = [Sample(id=q.id, category="math", teacher=teacher, think="t", answer="1", verify_score=1.0,
                          messages=[*q.messages, answer],
                          verifier="math", verify_details="{}", attempts=1, prompt_tokens=8, completion_tokens=tokens,
                          finish_reason="stop", config_hash="h").model_dump(mode="json") for q in queries[:accepted]]
        distill.write_shard(f"teachers/{teacher}/accepted", "part-0.parquet",
                            pa.Table.from_pylist(samples, schema=SAMPLE_SCHEMA))
        filtered = [{**s, "ppl": ppl, "response_tokens": tokens, "max_ngram_count": 1} for s in samples]
        distill.write_shard(f"teachers/{teacher}/filtered", "part-0.parquet",
                            pa.Table.from_pylist(filtered, schema=FILTERED_SCHEMA))
        Store(str(root / "train" / teacher)).write_text("summary.json", json.dumps({
            "model": str(root / "train" / teacher / "model"),
            "data": {teacher: {"samples": accepted, "kept": accepted}},
            "plan": {"total_steps": accepted, "resumed_at": 0}, "steps": [{"loss": 1.25}]}))
    evaluate = Store(str(root / "evaluate"))
    metrics = {}
    for model, correct in (("cool", [True, True, False, True]), ("hot", [True, False, False, False]),
                           ("base", [False] * 4)):
        for benchmark in ("gsm8k", "math500"):
            rows = [{"model": model, "benchmark": benchmark, "problem_id": f"{benchmark}-{i // 2}", "sample": i % 2,
                     "category": "math", "response": "r", "answer": "1", "score": float(c), "correct": c,
                     "verifier": "math", "verify_details": "{}", "failure": None if c else "wrong_answer",
                     "prompt_tokens": 8, "completion_tokens": 50 + 10 * i, "finish_reason": "stop", "config_hash": "h"}
                    for i, c in enumerate(correct)]
            table = pa.Table.from_pylist(rows, schema=EVAL_SAMPLE_SCHEMA)
            evaluate.write_shard(f"models/{model}/{benchmark}/samples", "part-0.parquet", table)
            metrics.setdefault(model, {})[benchmark] = benchmark_metrics(table, [1, 2])
    evaluate.write_text("results.json", json.dumps({"models": metrics, "protocol": {"date": "2026-01-01"}}))


def test_the_report_compares_students_and_their_teachers_datasets_from_the_jobs_outputs(tmp_path):
    write_finished_experiment(tmp_path)
    results = write_experiment_report(str(tmp_path), {"cool": ["cool"], "hot": ["hot"]})
    assert results == json.loads((tmp_path / "report" / "results.json").read_text())
    (table1,) = next(s for s in results["sections"] if s["id"] == "table1")["tables"]
    assert table1["columns"] == ["model", "trained on", *results["benchmarks"]]
    assert {tuple(row) for row in table1["rows"]} == {
        ("cool", "cool", "75.0 ± 25.0", "75.0 ± 25.0"), ("hot", "hot", "25.0 ± 25.0", "25.0 ± 25.0"),
        ("base", "— (base model)", "0.0 ± 0.0", "0.0 ± 0.0")}
    assert results["models"]["cool"]["training"] == {"samples": {"cool": 3}, "steps": 3, "final_loss": 1.25,
                                                     "model": str(tmp_path / "train" / "cool" / "model")}
    cool, hot = results["datasets"]["cool"], results["datasets"]["hot"]
    assert (cool["queries"], cool["accepted"], cool["acceptance_pct"], cool["filter_kept"]) == (4, 3, 75.0, 3)
    assert (hot["accepted"], hot["perplexity"]["mean"], hot["response_tokens"]["p50"]) == (1, 4.0, 300)
    page = (tmp_path / "report" / "report.html").read_text()
    for section in results["sections"]:
        assert section["title"] in page
        for figure in section["figures"]:
            assert (tmp_path / "report" / figure["file"]).read_bytes().startswith(b"\x89PNG")
