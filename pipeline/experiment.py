"""The paper's experiment as phases: what each phase's job is given, which phases a run can reuse, and running them.

    config, phases = load_experiment(path)            # every phase's job config, derived and validated, before any run
    steps = plan_phases(phases, read_records(store))  # per phase: reuse, resume or run, and why (format_plan)
    Runner(store, storage_options).run(steps)         # each job in a subprocess of its own, in order

Phases, in order: `preprocess` (jobs.preprocess over the query files, or a sample of their first lines), `distill`
(every teacher over the kept queries), `filter` (into the distill run's folders), `train/STUDENT` (one per teacher on
its filtered samples, and `train/mix` on all of them), `evaluate` (every student and the base model), `report`
(`pipeline.experiment_report`, in this process). Each job runs as `python -m jobs.X --config
OUTPUT/experiment/phases/X.yaml`, so it has its own Ray session and engines, its own checks, progress bars and resume;
under `ray job submit` the subprocess inherits RAY_ADDRESS and joins the same cluster.

A phase's key hashes its job's data settings (the config less where and how fast it runs, the output root written as
`${output}`) and its upstream phases' keys. Its record, `OUTPUT/experiment/phases/PHASE.json`, is written `running`
before the job starts and `finished` (with the job's summary) only after it succeeds. Planning compares records with
keys: a finished phase with the same key is reused; a running one with the same key was killed or failed, and its job
is run again with the same config, so the job's own resume continues it (committed shards, the last checkpoint); any
other is run, and so is every phase after one that runs. A phase re-run from other inputs, or with settings its job
would refuse in the folder it left, has that folder cleared first (distill, train, evaluate); filter re-decides in
place (new thresholds re-use its scores), preprocess replaces its output whole, and evaluate keeps its samples when
only the metrics or limits change. Nothing here imports Ray.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import posixpath
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.checks import check_inputs, check_output
from pipeline.config import (
    ConfigError, DistillConfig, EvalModel, EvaluateConfig, ExperimentConfig, FilterConfig, PreprocessConfig,
    QuerySourceConfig, TrainConfig, data_settings, load_config,
)
from pipeline.storage import Store, filesystem

RECORDS = "experiment/phases"
OUTPUT_MARK = "${output}"  # the output root inside a phase's settings: a key does not depend on where the root is


@dataclass(frozen=True)
class Phase:
    name: str  # preprocess, distill, filter, train/STUDENT, evaluate, report
    job: str | None  # the module run as a subprocess; None: the report, made in this process
    config: BaseModel | None  # the job's config as its --config file holds it
    args: list[str]  # the job's other arguments (--input, --output, --run)
    output: str | None  # the folder cleared before a fresh run; None: never cleared
    upstream: tuple[str, ...]
    settings: Any  # what the key covers besides the upstream keys
    job_hash: str  # the job's own config hash: a folder holding another one is refused by the job
    key: str
    samples: tuple[tuple[QuerySourceConfig, str], ...] = ()  # query files to sample (first lines) before the job
    progress_flag: bool = True  # the job takes --no-progress


@dataclass(frozen=True)
class Step:
    phase: Phase
    action: str  # reuse | resume | run
    reason: str
    clear: bool = False


# ---- the phases ----------------------------------------------------------------------------------------------------


def load_experiment(path: str) -> tuple[ExperimentConfig, list[Phase]]:
    """The experiment and its phases; a bad field anywhere raises `ConfigError` naming it, before anything runs."""
    config = load_config(ExperimentConfig, path)
    return config, experiment_phases(config, path)


def experiment_phases(config: ExperimentConfig, source: str = "config") -> list[Phase]:
    root = absolute(config.output)
    shared = {"storage_options": config.storage_options, "ray": config.ray.model_dump()}
    out = {name: posixpath.join(root, name) for name in ("preprocess", "distill", "evaluate")}
    student_eval, base_eval = _model_settings(config.evaluate, source)
    evaluate_section = {k: v for k, v in config.evaluate.items() if k not in ("student", "base")}
    train_section = dict(config.train)
    mix = train_section.pop("mix", False)
    if not isinstance(mix, bool):
        raise _refused(source, "train.mix", "Input should be a valid boolean")
    base_model = train_section.get("model")
    # Validated first with a stand-in model: preprocess decontaminates against its benchmarks.
    benchmarks = _section(EvaluateConfig, "evaluate", source, evaluate_section, {"models", "output"}, {
        **shared, "output": out["evaluate"], "models": [{"name": "student", "model": "student", **student_eval}],
    }).benchmarks

    preprocess_section = dict(config.preprocess)
    decontamination = dict(preprocess_section.get("decontamination") or {})
    if decontamination.get("benchmarks") is None:  # left out: what the students are scored on
        decontamination["benchmarks"] = [b.path or b.name for b in benchmarks]
    preprocess = _section(PreprocessConfig, "preprocess", source,
                          {**preprocess_section, "decontamination": decontamination}, set(), shared)
    distill_section = dict(config.distill)
    distill_input = distill_section.pop("input", None) or {}
    if "paths" in distill_input:
        raise _refused(source, "distill.input.paths", "derived by the experiment (the preprocess phase's kept/); "
                       "leave it out")
    distill = _section(DistillConfig, "distill", source, distill_section, {"output"}, {
        **shared, "output": out["distill"], "input": {**distill_input, "paths": [f"{out['preprocess']}/kept"]},
    })
    filter_config = _section(FilterConfig, "filter", source, {"student": base_model, **config.filter}, set(), shared)

    teachers = [t.name for t in distill.teachers]
    if mix and "mix" in teachers:
        raise _refused(source, "train.mix", "a teacher is named `mix`, the mixed student's name")
    students = {t: [t] for t in teachers} | ({"mix": teachers} if mix else {})
    data = dict(train_section.pop("data", None) or {})
    if "sources" in data:
        raise _refused(source, "train.data.sources", "derived by the experiment (each teacher's filtered samples); "
                       "leave it out")
    trains = {
        student: _section(TrainConfig, "train", source, train_section, {"output"}, {
            **shared, "output": posixpath.join(root, "train", student), "data": {**data, "sources": [
                {"name": t, "path": f"{out['distill']}/teachers/{t}/filtered"} for t in sources]},
        })
        for student, sources in students.items()
    }
    models = [{"name": s, "model": trains[s].output, **student_eval} for s in students]
    if base_eval is not None:
        if "base" in students:
            raise _refused(source, "evaluate.base", "a teacher is named `base`, the base model's name; set base: null")
        models.append({"name": "base", "model": base_model, **student_eval, **base_eval})
    evaluate = _section(EvaluateConfig, "evaluate", source, evaluate_section, {"models", "output"}, {
        **shared, "output": out["evaluate"], "models": models,
    })

    phases: list[Phase] = []

    def add(name: str, job: str | None, job_config: BaseModel | None, args: list[str], output: str | None,
            upstream: list[str], settings: Any, **extra: Any) -> None:
        keys = {p.name: p.key for p in phases}
        payload = {"phase": name, "settings": settings, "upstream": {u: keys[u] for u in upstream}}
        phases.append(Phase(name, job, job_config, args, output, tuple(upstream), settings,
                            job_config.config_hash() if job_config is not None else "", _hash(payload), **extra))

    samples, inputs = _query_inputs(config, root, source)
    add("preprocess", "jobs.preprocess", preprocess, ["--input", *inputs, "--output", out["preprocess"]], None, [],
        {"queries": [q.model_dump() for q in config.queries], "config": _settings(preprocess, root)},
        samples=tuple(samples))
    add("distill", "jobs.distill", distill, [], out["distill"], ["preprocess"], _settings(distill, root))
    add("filter", "jobs.filter", filter_config, ["--run", out["distill"]], None, ["distill"],
        _settings(filter_config, root))
    for student, train in trains.items():
        add(f"train/{student}", "jobs.train", train, [], train.output, ["filter"], _settings(train, root),
            progress_flag=False)
    train_phases = [f"train/{s}" for s in students]
    # `limit` is a scale setting to jobs.evaluate (a resumed evaluation may grow it), but it changes the results.
    limits = {b.name: b.limit for b in evaluate.benchmarks}
    add("evaluate", "jobs.evaluate", evaluate, [], out["evaluate"], train_phases,
        {**_settings(evaluate, root), "limits": limits})
    add("report", None, None, [], None, ["filter", *train_phases, "evaluate"], {"students": students})
    return phases


def _model_settings(evaluate: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`evaluate.student` (every student's EvalModel settings) and `evaluate.base` (the base model's overrides, or
    None: no base model), each validated as an EvalModel."""
    student, base = evaluate.get("student") or {}, evaluate.get("base", {})
    for name, overrides in (("student", student), ("base", base or {})):
        for key in sorted({"name", "model"} & set(overrides)):
            raise _refused(source, f"evaluate.{name}.{key}", "derived by the experiment (students are named for "
                           "their teachers, the base model is train.model); leave it out")
        _section(EvalModel, f"evaluate.{name}", source, {**student, **overrides}, set(), {"name": name, "model": name})
    return student, base


def _query_inputs(config: ExperimentConfig, root: str, source: str) -> tuple[list, list[str]]:
    """preprocess's inputs, and the query files to sample first: (source, sample file) for each with a `limit`."""
    samples, inputs = [], []
    for index, query_source in enumerate(config.queries):
        path = absolute(query_source.path)
        if query_source.limit is None:
            inputs.append(path)
            continue
        if not path.endswith((".jsonl", ".jsonl.gz")):
            raise _refused(source, f"queries.{index}.limit", f"samples the first lines of a JSONL file; "
                           f"{query_source.path} is not one")
        name = posixpath.basename(path).removesuffix(".gz")  # the sample is written uncompressed
        target = posixpath.join(root, "experiment", "queries", f"{index}-{name}")
        samples.append((query_source.model_copy(update={"path": path}), target))
        inputs.append(target)
    return samples, inputs


def _refused(source: str, field_path: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: invalid config\n  {field_path}: {message}")


def _section(model: type[BaseModel], name: str, source: str, section: dict[str, Any], derived: set[str],
             given: dict[str, Any]) -> Any:
    """`section` validated as `model`, with what the experiment gives; a field the experiment derives is refused."""
    for key in sorted(derived & set(section)):
        raise _refused(source, f"{name}.{key}", "derived by the experiment; leave it out")
    for key in sorted({"storage_options", "ray"} & set(section)):
        raise _refused(source, f"{name}.{key}", "set once, at the top of the experiment")
    try:
        return model.model_validate({**section, **given})
    except ValidationError as err:
        lines = [f"  {name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(lines)) from None


def _settings(job_config: BaseModel, root: str) -> Any:
    """The job's data settings, less where it runs; the output root as `${output}`."""
    payload = data_settings(job_config)
    for key in ("ray", "storage_options", "output"):
        payload.pop(key, None)
    return json.loads(json.dumps(payload).replace(json.dumps(root)[1:-1], OUTPUT_MARK))


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def absolute(path: str) -> str:
    """A local path as an absolute one (jobs hand paths to Ray workers in other folders); URLs as they are."""
    return path if "://" in path else os.path.abspath(path)


def check_paths(config: ExperimentConfig, phases: list[Phase]) -> None:
    """The query files, the benchmark files and the output, checked before any phase starts."""
    check_inputs([absolute(q.path) for q in config.queries], config.storage_options)
    evaluate = next(p for p in phases if p.name == "evaluate").config
    check_inputs([absolute(b.path) for b in evaluate.benchmarks if b.path], config.storage_options)
    check_output(absolute(config.output), config.storage_options)


# ---- the plan ------------------------------------------------------------------------------------------------------


def read_records(store: Store) -> dict[str, dict[str, Any]]:
    records = {}
    for path in store.fs.glob(store.path(RECORDS, "**", "*.json")):
        name = path[len(store.path(RECORDS)) + 1:-len(".json")]
        with store.fs.open(path, "r") as f:
            records[name] = json.load(f)
    return records


def plan_phases(phases: list[Phase], records: dict[str, dict[str, Any]]) -> list[Step]:
    """What a run does with each phase, given the records of earlier runs (see the module docstring)."""
    steps: list[Step] = []
    rerun: set[str] = set()
    for phase in phases:
        record = records.get(phase.name)
        changed_upstream = [u for u in phase.upstream if u in rerun]
        same = record is not None and record["key"] == phase.key
        if same and record["status"] == "finished" and not changed_upstream:
            steps.append(Step(phase, "reuse", f"finished {record['finished_at']}, same settings and inputs"))
            continue
        rerun.add(phase.name)
        if same:
            why = "was stopped or failed before it finished" if record["status"] == "running" else "its inputs resume"
            steps.append(Step(phase, "resume", f"{why}: the job continues from what it committed"))
            continue
        if record is None:
            steps.append(Step(phase, "run", "never run"))
            continue
        other_inputs = record.get("upstream") != {u: _key(phases, u) for u in phase.upstream}
        changed = changed_fields(record.get("settings"), phase.settings)
        reasons = ([f"settings changed: {', '.join(changed[:6])}{' …' if len(changed) > 6 else ''}"] if changed else [])
        if other_inputs:
            reasons.append(f"its inputs changed ({', '.join(u for u in phase.upstream if u in rerun) or 'upstream'})")
        clear = phase.output is not None and (other_inputs or record.get("job_hash") != phase.job_hash)
        steps.append(Step(phase, "run", "; ".join(reasons) or "settings changed", clear))
    return steps


def _key(phases: list[Phase], name: str) -> str:
    return next(p.key for p in phases if p.name == name)


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two settings trees differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [path for key in sorted(set(old) | set(new), key=str)
                for path in changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [path for i, (a, b) in enumerate(zip(old, new)) for path in changed_fields(a, b, f"{prefix}{i}.")]
    return [] if old == new else [prefix.rstrip(".") or "<all>"]


def format_plan(steps: list[Step]) -> str:
    width = max(len(s.phase.name) for s in steps)
    lines = ["[experiment] plan:"]
    for step in steps:
        clear = f" (clears {step.phase.output} first)" if step.clear else ""
        lines.append(f"  {step.phase.name:<{width}}  {step.action:<6}  {step.reason}{clear}")
    return "\n".join(lines)


# ---- running it ----------------------------------------------------------------------------------------------------


@dataclass
class Runner:
    """Runs a plan's phases in order: each job in a subprocess, its record written before and after."""

    store: Store
    storage_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    report: Callable[[Phase], dict[str, Any]] | None = None  # makes the report phase; returns its summary
    config_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="experiment-"))

    def run(self, steps: list[Step]) -> int:
        """0 when every phase finished; else the failed job's exit status, after a line naming the phase."""
        keys = {step.phase.name: step.phase.key for step in steps}
        for step in steps:
            phase = step.phase
            if step.action == "reuse":
                continue
            if step.clear:
                print(f"[experiment] {phase.name}: clearing {phase.output}", flush=True)
                Store(phase.output, self.storage_options).remove("")
            record = {"key": phase.key, "job_hash": phase.job_hash, "settings": phase.settings,
                      "upstream": {u: keys[u] for u in phase.upstream},
                      "status": "running", "started_at": _now()}
            self._write_record(phase.name, record)
            print(f"[experiment] {phase.name}: {step.action} ({step.reason})", flush=True)
            if phase.job is None:
                summary = self.report(phase)
            else:
                for query_source, target in phase.samples:
                    sample_lines(query_source, target, self.storage_options)
                status = subprocess.run(self.command(phase)).returncode
                if status != 0:
                    print(f"[experiment] {phase.name} failed (exit status {status}); fix the cause and run the same "
                          "command again: finished phases are reused, this one continues", file=sys.stderr, flush=True)
                    return status if status > 0 else 1  # a job killed by a signal
                summary = job_summary(phase, self.storage_options)
            self._write_record(phase.name, {**record, "status": "finished", "finished_at": _now(),
                                            "summary": summary})
        return 0

    def command(self, phase: Phase) -> list[str]:
        config_path = self.store.path(RECORDS, f"{phase.name}.yaml")
        text = yaml.safe_dump(phase.config.model_dump(mode="json"), sort_keys=False)
        self.store.write_text(posixpath.join(RECORDS, f"{phase.name}.yaml"), text)
        if "://" in self.store.url:  # jobs read --config from local disk
            config_path = os.path.join(self.config_dir, f"{phase.name.replace('/', '-')}.yaml")
            with open(config_path, "w") as f:
                f.write(text)
        command = [sys.executable, "-m", phase.job, "--config", config_path, *phase.args]
        return command + (["--no-progress"] if phase.progress_flag and not self.progress else [])

    def _write_record(self, name: str, record: dict[str, Any]) -> None:
        self.store.write_text(posixpath.join(RECORDS, f"{name}.json"), json.dumps(record, indent=2))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sample_lines(query_source: QuerySourceConfig, target: str, storage_options: dict[str, Any]) -> None:
    """The first `limit` lines of a JSONL file, written to `target` whole (a killed copy is never half there)."""
    fs, path = filesystem(query_source.path, storage_options)
    with fs.open(path, "rb", compression="infer") as f:
        data = b"".join(islice(f, query_source.limit))
    target_fs, target_path = filesystem(target, storage_options)
    target_fs.makedirs(posixpath.dirname(target_path), exist_ok=True)
    target_fs.pipe(target_path + ".partial", data)
    target_fs.mv(target_path + ".partial", target_path)


def job_summary(phase: Phase, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a finished job, from the summary it wrote (the marker keeps them for the plan)."""
    def read(url: str) -> Any:
        fs, path = filesystem(url, storage_options)
        with fs.open(path, "r") as f:
            return json.load(f)

    config = phase.config
    if phase.job == "jobs.preprocess":
        summary = read(posixpath.join(phase.args[phase.args.index("--output") + 1], "summary.json"))
        return {k: summary[k] for k in ("rows_read", "kept", "rejected") if k in summary}
    if phase.job == "jobs.distill":
        return {k: v for k, v in read(posixpath.join(config.output, "summary.json")).items() if k != "plots"}
    if phase.job == "jobs.filter":
        run = phase.args[phase.args.index("--run") + 1]
        return {t["name"]: {k: v for k, v in read(f"{run}/teachers/{t['name']}/filter_summary.json").items()
                            if k in ("samples", "kept", "rejected", "thresholds")}
                for t in read(f"{run}/config.json")["config"]["teachers"]}
    if phase.job == "jobs.train":
        summary = read(posixpath.join(config.output, "summary.json"))
        steps = summary.get("steps") or []
        return {"model": summary["model"], "plan": summary["plan"], "data": summary["data"],
                "final_loss": steps[-1]["loss"] if steps else None}
    results = read(posixpath.join(config.output, "results.json"))
    return {model: {b: m["pass@1"] for b, m in benchmarks.items()} for model, benchmarks in results["models"].items()}
