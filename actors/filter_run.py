"""`jobs.filter` on Ray Data: score a distill run's accepted samples, then keep those that pass the quality filters.

Per teacher, beside the distill output (`actors/distill_run.py`), under `teachers/<name>/`:
    filter_scores/             phase 1: one SCORE_SCHEMA row per scored sample (pipeline/quality.py)
    filter_scores/_scoring.json   the scoring settings and their hash
    filtered/                  samples that pass: FILTERED_SCHEMA, plus README.md (a Hugging Face dataset card)
    filter_rejects/            every other accepted sample: FILTER_REJECT_SCHEMA, with `filter_reason`, `filter_detail`
    filter_summary.json        counts by reason, the thresholds applied, ppl and length summaries; comes last

Phase 1 (scoring) streams the samples not yet in `filter_scores/` through the student tokenizer (lengths, n-grams,
structure) and the perplexity actor pool (`actors/perplexity.py`), committing shards as it goes, so a killed run
continues where it stopped. Scores made with other scoring settings (another reference model, tokenizer or n) are
not mixed in: the folder is cleared and everything is scored again, with a line saying so. Phase 2 (deciding) needs
the whole teacher's distribution (percentile thresholds, corpus-wide n-gram counts): it resolves them once, decides
batch by batch on the cluster (each sample joined with its scores by id), writes `filtered/` and `filter_rejects/`
under `_filter_staging/<tag>/` and only then swaps them in, so readers see one run's outputs or the previous ones.
Changing only thresholds re-runs phase 2 alone.
Every accepted sample ends in exactly one of `filtered/` and `filter_rejects/`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from tqdm import tqdm

from actors.cluster import connect_ray
from actors.engine_pool import actor_pool
from actors.inputs import join_by_id
from actors.perplexity import PerplexityScorer
from actors.train_data import cached_tokenizer
from pipeline.checks import check_model, check_output, filesystem_for, why
from pipeline.config import ConfigError, FilterConfig
from pipeline.dataset_card import dataset_card
from pipeline.quality import (
    FILTER_REJECT_SCHEMA, FILTERED_SCHEMA, REASONS, SCORE_SCHEMA, Thresholds, decide, distinct_ngram_hashes,
    measure, prompt_and_response, resolve_thresholds, summarize,
)
from pipeline.resources import INGEST_CPUS_PER_TASK, local_cluster_cpus, pool_range
from pipeline.storage import ShardWriter, Store, new_run_tag, replace_with

SCORES = "filter_scores"
OUTPUTS = ["filtered", "filter_rejects", "filter_summary.json"]  # the last one marks a complete phase 2
_LIGHT = {"num_cpus": INGEST_CPUS_PER_TASK, "batch_format": "pyarrow"}
_SAMPLE_TEXT = ["id", "messages", "think", "answer"]
RESPONSES_PER_COUNT = 2_000  # responses per partition of the corpus-wide n-gram count


def check_run(run: str, teachers: list[str] | None, config: FilterConfig) -> tuple[dict[str, Any], list[str]]:
    """The distill run's config and the teachers to filter; raises `ConfigError` naming what is wrong, before Ray."""
    fs, path = filesystem_for("--run", run, config.storage_options)
    try:
        if not fs.exists(path):
            raise ConfigError(f"--run {run}: no such folder")
        if not fs.exists(path.rstrip("/") + "/config.json"):
            raise ConfigError(f"--run {run}: not a distill output (no config.json)")
        with fs.open(path.rstrip("/") + "/config.json", "r") as f:
            distill = json.load(f)
    except OSError as err:
        raise ConfigError(f"--run {run}: {why(err)}") from None
    names = [t["name"] for t in distill["config"]["teachers"]]
    unknown = [name for name in teachers or [] if name not in names]
    if unknown:
        raise ConfigError(f"--teachers {unknown[0]}: not a teacher of {run} (it has {', '.join(names)})")
    check_output(run, config.storage_options, "--run")
    check_model(config.student, config.storage_options, "student")
    if config.perplexity is not None:
        check_model(config.perplexity.model, config.storage_options, "perplexity.model")
    return distill, teachers or names


def run_filter(run: str, config: FilterConfig, teachers: list[str] | None = None,
               progress: bool = True) -> dict[str, Any]:
    distill, names = check_run(run, teachers, config)
    perplexity = config.perplexity
    scorer_cpus = perplexity.engine.num_cpus * pool_range(perplexity.engine)[1] if perplexity else 0.0
    connect_ray(config.ray, local_cluster_cpus(scorer_cpus, config.ray))
    ray.data.DataContext.get_current().enable_progress_bars = progress
    print(f"[filter] config {config.config_hash()}, scoring {config.scoring_hash()}; run {run}", flush=True)
    reports = []
    for name in names:
        teacher = Store(run.rstrip("/") + f"/teachers/{name}", config.storage_options)
        started = time.monotonic()
        samples = teacher.count_rows("accepted")
        if not samples:
            reports.append({"teacher": name, "samples": 0, "skipped": "no accepted samples"})
            continue
        scored_now = score_teacher(teacher, name, samples, config, progress)
        report = decide_teacher(teacher, name, samples, config, distill["config_hash"])
        reports.append({"teacher": name, **report, "scored_now": scored_now,
                        "wall_s": round(time.monotonic() - started, 1)})
    return {"run": run, "config_hash": config.config_hash(), "scoring_hash": config.scoring_hash(),
            "teachers": reports}


# ---- phase 1: scores ----------------------------------------------------------------------------------------------


def score_teacher(teacher: Store, name: str, samples: int, config: FilterConfig, progress: bool) -> int:
    """Score the `samples` accepted samples `filter_scores/` lacks; returns how many were scored now."""
    scoring_hash = config.scoring_hash()
    marker = f"{SCORES}/_scoring.json"
    if teacher.exists(marker) and json.loads(teacher.read_text(marker))["scoring_hash"] != scoring_hash:
        print(f"[filter] {name}: filter_scores were made with other scoring settings; scoring again", flush=True)
        teacher.remove(SCORES)
    if not teacher.exists(marker):
        teacher.write_text(marker, json.dumps({"scoring_hash": scoring_hash, "student": config.student,
                                               "n": config.ngram.n, "perplexity": config.perplexity and
                                               config.perplexity.model_dump(mode="json")}, indent=2))
    # Only accepted samples are scored, each once (a shard is committed whole), so the counts say what is missing.
    missing = samples - teacher.count_rows(SCORES)
    if missing <= 0:
        return 0
    stream = _samples(teacher)
    if teacher.shards(SCORES):  # a resumed run: the samples minus those scored, by a hash join on the cluster
        scored = ray.data.read_parquet(teacher.shards(SCORES), filesystem=teacher.arrow_filesystem(),
                                       num_cpus=INGEST_CPUS_PER_TASK).select_columns(["id"])
        stream = join_by_id(stream, scored, "left_anti", samples)
    stream = stream.map_batches(_measure_batch, fn_kwargs={"config": config}, **_LIGHT)
    perplexity = config.perplexity
    if perplexity is not None:
        stream = stream.map_batches(
            PerplexityScorer,
            fn_constructor_kwargs={"config": perplexity, "storage_options": config.storage_options},
            batch_size=perplexity.engine.batch_size,
            batch_format="pyarrow",
            compute=actor_pool(perplexity.engine),
            num_cpus=perplexity.engine.num_cpus,
            num_gpus=perplexity.engine.num_gpus,
        )
    writer = ShardWriter(teacher, SCORES, SCORE_SCHEMA, config.shard_rows, flush_seconds=60.0)
    stamp = {"scoring_hash": scoring_hash}
    with tqdm(total=missing, desc=f"scoring {name}", unit="sample", disable=not progress) as bar:
        # Batches of a shard each: every shard is committed as soon as it is whole, so a kill loses less than one.
        for batch in stream.iter_batches(batch_format="pyarrow", batch_size=config.shard_rows):
            rows = batch.drop_columns(_SAMPLE_TEXT[1:]).to_pylist()
            writer.add({**{c: row.get(c) for c in SCORE_SCHEMA.names}, **stamp} for row in rows)
            bar.update(len(rows))
    writer.flush()
    return writer.rows_written


def _samples(teacher: Store, columns: list[str] | None = _SAMPLE_TEXT) -> ray.data.Dataset:
    samples = ray.data.read_parquet(teacher.shards("accepted"), filesystem=teacher.arrow_filesystem(),
                                    num_cpus=INGEST_CPUS_PER_TASK)
    return samples if columns is None else samples.select_columns(columns)


def _measure_batch(batch: pa.Table, config: FilterConfig) -> pa.Table:
    tokenizer = cached_tokenizer(config.student, json.dumps(config.storage_options, sort_keys=True))
    measured = [measure(row, tokenizer, config.ngram.n) for row in batch.to_pylist()]
    for column in ("structure", "response_tokens", "sequence_tokens", "max_ngram_count"):
        batch = batch.append_column(SCORE_SCHEMA.field(column), pa.array([m[column] for m in measured],
                                                                         SCORE_SCHEMA.field(column).type))
    return batch


# ---- phase 2: decisions -------------------------------------------------------------------------------------------


def decide_teacher(teacher: Store, name: str, samples: int, config: FilterConfig,
                   distill_hash: str) -> dict[str, Any]:
    """Decide every accepted sample, batch by batch on the cluster: each joined with its scores and judged against
    thresholds resolved once for the teacher. The driver holds columns (the perplexities, then the outcomes' reasons,
    perplexities and lengths), never a row per sample."""
    thresholds = resolve_thresholds(config, teacher.read_table(SCORES, columns=["ppl"]).column("ppl"))
    boilerplate = corpus_boilerplate(teacher, samples, config) if config.ngram.corpus_max_responses else set()
    scores = ray.data.read_parquet(teacher.shards(SCORES), filesystem=teacher.arrow_filesystem(),
                                   num_cpus=INGEST_CPUS_PER_TASK).drop_columns(["scoring_hash"])
    judged = join_by_id(_samples(teacher, None), scores, "inner", samples).map_batches(
        _decide_batch, fn_kwargs={"thresholds": thresholds, "config": config, "boilerplate": boilerplate}, **_LIGHT
    ).materialize()

    staging = f"_filter_staging/{new_run_tag()}"
    for folder, kept, schema in [("filtered", True, FILTERED_SCHEMA), ("filter_rejects", False, FILTER_REJECT_SCHEMA)]:
        judged.map_batches(_select, fn_kwargs={"kept": kept}, **_LIGHT).write_parquet(
            teacher.path(staging, folder), filesystem=teacher.arrow_filesystem()
        )
        if not teacher.shards(f"{staging}/{folder}"):  # nothing to write: an empty shard still gives the schema
            teacher.write_shard(f"{staging}/{folder}", "part-empty.parquet", schema.empty_table())
    kept_columns = teacher.read_table(f"{staging}/filtered", columns=["ppl", "response_tokens"])
    reasons = teacher.read_table(f"{staging}/filter_rejects", columns=["filter_reason"]).column("filter_reason")
    if kept_columns.num_rows + len(reasons) != samples:
        raise RuntimeError(f"{name}: {samples - kept_columns.num_rows - len(reasons)} accepted samples have no score")
    summary = {"teacher": name, "config_hash": config.config_hash(), "distill_config_hash": distill_hash,
               **summarize(reasons, kept_columns.column("ppl"), kept_columns.column("response_tokens"), thresholds)}
    teacher.write_text(f"{staging}/filtered/README.md",
                       dataset_card(summary, config.model_dump(mode="json"), FILTERED_SCHEMA))
    teacher.write_text(f"{staging}/filter_summary.json", json.dumps(summary, indent=2))
    replace_with(teacher, staging, OUTPUTS)
    teacher.remove("_filter_staging")  # this run's, now empty, and any a killed run left
    return summary


def _decide_batch(batch: pa.Table, thresholds: Thresholds, config: FilterConfig, boilerplate: set[int]) -> pa.Table:
    """Samples joined with their scores, as FILTER_REJECT_SCHEMA rows with their verdicts."""
    scores = batch.select([name for name in SCORE_SCHEMA.names if name != "scoring_hash"]).to_pylist()
    counts = _count_boilerplate(batch, config, boilerplate) if boilerplate else [0] * batch.num_rows
    verdicts = [decide(score, thresholds, count) for score, count in zip(scores, counts)]
    columns = {name: batch.column(name) for name in FILTER_REJECT_SCHEMA.names[:-2]}
    columns["filter_reason"] = pa.array([v and v[0] for v in verdicts], pa.string())
    columns["filter_detail"] = pa.array([v and v[1] for v in verdicts], pa.string())
    return pa.table(columns).cast(FILTER_REJECT_SCHEMA)


def _select(batch: pa.Table, kept: bool) -> pa.Table:
    if kept:
        return batch.filter(pc.is_null(batch.column("filter_reason"))).select(FILTERED_SCHEMA.names)
    return batch.filter(pc.is_valid(batch.column("filter_reason")))


def corpus_boilerplate(teacher: Store, samples: int, config: FilterConfig) -> set[int]:
    """The n-gram hashes found in more than `corpus_max_responses` responses: a distributed count of responses per
    hash, of which only the hashes above the limit come to the driver."""
    hashes = _samples(teacher).map_batches(_hash_rows, fn_kwargs={"config": config}, **_LIGHT)
    # Ray Data's default of 200 partitions is 200 tasks even for a few samples; a partition per RESPONSES_PER_COUNT
    # responses (about as many hashes as tokens) keeps each one's memory bounded.
    common = hashes.groupby("hash", num_partitions=max(1, samples // RESPONSES_PER_COUNT)).count().map_batches(
        _more_than, fn_kwargs={"limit": config.ngram.corpus_max_responses}, **_LIGHT
    )
    return {h for batch in common.iter_batches(batch_format="pyarrow") for h in batch.column("hash").to_pylist()}


def _response_hashes(batch: pa.Table, config: FilterConfig) -> list[np.ndarray]:
    tokenizer = cached_tokenizer(config.student, json.dumps(config.storage_options, sort_keys=True))
    return [distinct_ngram_hashes(tokenizer(prompt_and_response(row)[1], add_special_tokens=False)["input_ids"],
                                  config.ngram.n) for row in batch.to_pylist()]


def _hash_rows(batch: pa.Table, config: FilterConfig) -> pa.Table:
    hashes = _response_hashes(batch, config)
    return pa.table({"hash": pa.array(np.concatenate(hashes) if hashes else [], pa.uint64())})


def _more_than(counts: pa.Table, limit: int) -> pa.Table:
    return counts.filter(pc.greater(counts.column("count()"), limit))


def _count_boilerplate(batch: pa.Table, config: FilterConfig, hashes: set[int]) -> list[int]:
    """How many of the corpus's boilerplate n-grams each response holds."""
    return [sum(int(h) in hashes for h in response) for response in _response_hashes(batch, config)]


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"filter summary  (config {summary['config_hash']}, scoring {summary['scoring_hash']}, "
             f"run {summary['run']})"]
    for report in summary["teachers"]:
        if "skipped" in report:
            lines.append(f"  {report['teacher']}: skipped, {report['skipped']}")
            continue
        lines.append(f"  {report['teacher']}: {report['samples']} samples, {report['kept']} kept "
                     f"({report['scored_now']} scored in this run, {report['wall_s']} s)")
        rejected = ", ".join(f"{reason} {report['rejected'][reason]}" for reason in REASONS)
        lines.append(f"    rejected: {rejected}")
        thresholds = report["thresholds"]
        applied = f"max_tokens {thresholds['max_tokens']}, {thresholds['n']}-gram max_repeats " \
                  f"{thresholds['max_repeats']}, corpus_max_responses {thresholds['corpus_max_responses']}"
        if thresholds["max_ppl"] is not None:
            percentile = thresholds["max_ppl_percentile"]
            applied += f", max_ppl {thresholds['max_ppl']:.4g}" + (f" (p{percentile:g})" if percentile else "")
        lines.append(f"    thresholds: {applied}")
        for label, key in [("kept ppl", "kept_ppl"), ("kept response tokens", "kept_response_tokens")]:
            if report[key]:
                lines.append(f"    {label}: mean {report[key]['mean']:g}, median {report[key]['median']:g}")
    return "\n".join(lines)
