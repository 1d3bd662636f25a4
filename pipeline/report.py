"""What a distill run's teachers produced, as numbers: cost and yield, response lengths, perplexity, verify scores and
difficulty, the threshold ablation, rejects and filters, per teacher and category (`jobs.analyze`).

`read_teacher` reads one teacher's folders of a run (the layout of `actors/distill_run.py`, and `jobs.filter`'s
`filtered/` and `filter_rejects/` when it has run); everything else is a pure function of those Arrow tables.
`build_report` lays the numbers out as sections of titled tables (columns and rows of plain values) and captioned
figures: `report.json` is that structure, and `pipeline.report_html` renders it, so the page shows no number the JSON
lacks. Must never import Ray or vLLM.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import plots
from pipeline.ablation import ABLATION_COLUMNS, DEFAULT_THRESHOLDS, AblationResult, ablate
from pipeline.config import ConfigError
from pipeline.engine import REQUEST_FAILURES
from pipeline.quality import FILTER_REJECT_SCHEMA, FILTERED_SCHEMA
from pipeline.schema import ATTEMPT_SCHEMA, REJECT_SCHEMA, SAMPLE_SCHEMA
from pipeline.storage import Store

ALL = "all"  # the category row that sums a teacher's categories
PERCENTILES = (10, 25, 50, 75, 90, 99)
SHORT_TOKENS, LONG_TOKENS = 1024, 10240  # the paper's length-diversity marks
FILTER_COLUMNS = ["id", "category", "ppl", "response_tokens"]

_ACCEPTED_COLUMNS = ["id", "category", "attempts", "completion_tokens", "verify_score"]
_REJECT_COLUMNS = ["id", "reason", "attempts"]
_ATTEMPT_COLUMNS = [*ABLATION_COLUMNS, "completion_tokens", "verifier"]


# ---- reading a run -------------------------------------------------------------------------------------------------


@dataclass
class TeacherTables:
    """One teacher's outputs in a run; an empty folder is an empty table. `attempts` and `rejects` carry the query's
    `category`; `filtered` and `filter_rejects` are None when `jobs.filter` has not run."""

    name: str
    accepted: pa.Table
    rejects: pa.Table
    attempts: pa.Table
    filtered: pa.Table | None = None
    filter_rejects: pa.Table | None = None


@dataclass
class TeacherRun:
    label: str  # TEACHER, or RUN/TEACHER when several runs are compared
    run: str  # the run folder
    config: dict[str, Any]  # the teacher's entry of the run's config.json
    queries: pa.Table  # id, category, user_turns: every query of the run
    tables: TeacherTables

    @property
    def accept_threshold(self) -> float:
        return self.config.get("accept_threshold", 0.9)


def check_run(store: Store) -> None:
    """A run folder holds `config.json` and a finished ingest; anything else is refused with the path."""
    try:
        if not store.fs.isdir(store.root):
            raise ConfigError(f"runs {store.url}: no such folder")
        for marker, what in [("config.json", "no config.json"), ("queries/_SUCCESS", "no finished queries/ ingest")]:
            if not store.exists(marker):
                raise ConfigError(f"runs {store.url}: not a distill run folder ({what})")
    except OSError as err:  # e.g. access denied to a bucket
        raise ConfigError(f"runs {store.url}: cannot read it: {' '.join(str(err).split())}") from None


def read_run(store: Store, label_with_run: bool) -> list[TeacherRun]:
    check_run(store)
    config = json.loads(store.read_text("config.json"))["config"]
    queries = read_queries(store)
    run_name = posixpath.basename(store.url.rstrip("/"))
    category_of = dict(zip(queries.column("id").to_pylist(), queries.column("category").to_pylist()))
    return [
        TeacherRun(
            label=f"{run_name}/{teacher['name']}" if label_with_run else teacher["name"],
            run=store.url, config=teacher, queries=queries,
            tables=read_teacher(store, teacher["name"], category_of),
        )
        for teacher in config["teachers"]
    ]


def read_queries(store: Store) -> pa.Table:
    """The run's queries: id, category and `user_turns`, the number of user messages each has."""
    table = store.read_table("queries", columns=["id", "category", "messages"])
    messages = table.column("messages").combine_chunks()
    is_user = pc.equal(pc.struct_field(messages.flatten(), "role"), "user")
    parents = pc.list_parent_indices(messages)
    counts = pa.table({"row": parents, "user": is_user}).filter(is_user).group_by("row").aggregate([("user", "count")])
    user_turns = [0] * table.num_rows
    for row, count in zip(counts.column("row").to_pylist(), counts.column("user_count").to_pylist()):
        user_turns[row] = count
    return table.drop_columns(["messages"]).append_column("user_turns", pa.array(user_turns, pa.int64()))


def read_teacher(store: Store, name: str, category_of: dict[str, str] | None = None) -> TeacherTables:
    base = f"teachers/{name}"

    def read(folder: str, schema: pa.Schema, columns: list[str]) -> pa.Table:
        table = store.read_table(f"{base}/{folder}", columns=columns)
        table = schema.empty_table().select(columns) if table is None else table
        if category_of is not None and "category" not in table.column_names:
            ids = table.column("id").to_pylist()
            table = table.append_column("category", pa.array([category_of.get(i, "unknown") for i in ids], pa.string()))
        return table

    tables = TeacherTables(
        name=name,
        accepted=read("accepted", SAMPLE_SCHEMA, _ACCEPTED_COLUMNS),
        rejects=read("rejects", REJECT_SCHEMA, _REJECT_COLUMNS),
        attempts=read("attempts", ATTEMPT_SCHEMA, _ATTEMPT_COLUMNS),
    )
    if store.shards(f"{base}/filtered") or store.shards(f"{base}/filter_rejects"):
        tables.filtered = read("filtered", FILTERED_SCHEMA, FILTER_COLUMNS)
        tables.filter_rejects = read("filter_rejects", FILTER_REJECT_SCHEMA, [*FILTER_COLUMNS, "filter_reason"])
    return tables


def has_text(store: Store, teacher: str) -> bool:
    """Whether every shard of the teacher's attempts log has the `text` column (runs from before it lack it)."""
    shards = store.shards(f"teachers/{teacher}/attempts")
    return bool(shards) and all("text" in pq.read_schema(s, filesystem=store.fs).names for s in shards)


# ---- cost and yield (also the distill run's summary) ---------------------------------------------------------------


@dataclass(frozen=True)
class Yield:
    queries: int
    accepted: int
    rejected: dict[str, int]  # distill rejects by reason
    mean_attempts: float  # generation rounds per finished query, accepted or rejected
    generated_tokens: int  # completion tokens of every logged candidate

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.queries if self.queries else 0.0

    @property
    def tokens_per_accepted(self) -> float | None:
        return self.generated_tokens / self.accepted if self.accepted else None


def teacher_yield(queries: int, accepted: pa.Table, rejects: pa.Table, attempts: pa.Table) -> Yield:
    """From what is committed: `accepted` and `rejects` with an `attempts` column, `rejects` with `reason`,
    `attempts` (the log) with `completion_tokens`."""
    rounds = pa.chunked_array([*accepted.column("attempts").chunks, *rejects.column("attempts").chunks], pa.int32())
    return Yield(
        queries=queries,
        accepted=accepted.num_rows,
        rejected=dict(sorted(Counter(rejects.column("reason").to_pylist()).items())),
        mean_attempts=(pc.mean(rounds).as_py() or 0.0) if len(rounds) else 0.0,
        generated_tokens=pc.sum(attempts.column("completion_tokens")).as_py() or 0,
    )


# ---- distributions -------------------------------------------------------------------------------------------------


def length_summary(lengths: pa.Array | pa.ChunkedArray) -> dict[str, Any]:
    """Percentiles of response lengths in tokens, and the shares under 1,024 and over 10,240 tokens (in %)."""
    n = len(lengths)
    summary: dict[str, Any] = {"n": n}
    quantiles = pc.quantile(lengths, q=[p / 100 for p in PERCENTILES]).to_pylist() if n else [None] * len(PERCENTILES)
    summary.update({f"p{p}": None if q is None else round(q) for p, q in zip(PERCENTILES, quantiles)})
    summary["under_1024_pct"] = _pct(pc.sum(pc.less(lengths, SHORT_TOKENS)).as_py(), n) if n else None
    summary["over_10240_pct"] = _pct(pc.sum(pc.greater(lengths, LONG_TOKENS)).as_py(), n) if n else None
    return summary


def value_summary(values: pa.Array | pa.ChunkedArray, digits: int = 3) -> dict[str, Any]:
    """Mean, p10, median and p90 of the non-null values."""
    values = pc.drop_null(values)
    n = len(values)
    quantiles = pc.quantile(values, q=[0.1, 0.5, 0.9]).to_pylist() if n else [None] * 3
    return {
        "n": n, "mean": round(pc.mean(values).as_py(), digits) if n else None,
        **{k: None if q is None else round(q, digits) for k, q in zip(("p10", "p50", "p90"), quantiles)},
    }


def scored_candidates(attempts: pa.Table) -> pa.Table:
    """The candidates of the attempts log that were generated and scored: failed requests hold no candidate."""
    failure = attempts.column("failure")
    request_failed = pc.fill_null(pc.is_in(failure, pa.array(sorted(REQUEST_FAILURES))), False)
    return attempts.filter(pc.invert(request_failed))


def pass_rates(attempts: pa.Table) -> pa.Table:
    """Per query: `pass_rate`, the share of its scored candidates that passed the run's threshold (a difficulty
    signal: 0 for a query no candidate solved), with its `category`."""
    candidates = scored_candidates(attempts)
    passed = pc.cast(pc.is_null(candidates.column("failure")), pa.float64())
    table = pa.table({"id": candidates.column("id"), "category": candidates.column("category"), "passed": passed})
    grouped = table.group_by(["id", "category"]).aggregate([("passed", "mean")])
    return grouped.rename_columns(["id", "category", "pass_rate"])


# ---- the report ----------------------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str  # file name under the report's figures/
    caption: str
    png: bytes


@dataclass
class Section:
    id: str
    title: str
    intro: str
    tables: list[dict[str, Any]]  # {"id", "caption", "columns", "rows"}
    figures: list[Figure]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "intro": self.intro, "tables": self.tables,
            "figures": [{"file": f"figures/{f.name}", "caption": f.caption} for f in self.figures],
        }


def table(table_id: str, caption: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"id": table_id, "caption": caption, "columns": columns, "rows": rows}


def build_report(teachers: list[TeacherRun], thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[Section]:
    ablations = {t.label: [ablate_teacher(t, th) for th in thresholds] for t in teachers}
    return [
        summary_section(teachers),
        length_section(teachers),
        perplexity_section(teachers),
        verification_section(teachers),
        ablation_section(teachers, ablations),
        rejects_section(teachers),
    ]


def ablate_teacher(teacher: TeacherRun, threshold: float, attempts: pa.Table | None = None) -> AblationResult:
    """The teacher's ablation at `threshold`, over its attempts log (or `attempts`, the same log with more columns)."""
    queries = teacher.queries
    user_turns = dict(zip(queries.column("id").to_pylist(), queries.column("user_turns").to_pylist()))
    attempts = teacher.tables.attempts if attempts is None else attempts
    return ablate(attempts, user_turns, threshold, teacher.accept_threshold)


def _groups(teacher: TeacherRun, *tables: pa.Table | None) -> list[str]:
    """The category rows of a teacher: `all`, then each category its queries or the given tables hold."""
    found = set(teacher.queries.column("category").to_pylist())
    for t in tables:
        if t is not None:
            found |= set(t.column("category").to_pylist())
    return [ALL, *sorted(found)]


def _in(category: str, t: pa.Table) -> pa.Table:
    return t if category == ALL else t.filter(pc.equal(t.column("category"), category))


def _pct(part: float, whole: float, digits: int = 1) -> float | None:
    return round(100 * part / whole, digits) if whole else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summary_section(teachers: list[TeacherRun]) -> Section:
    rows = []
    for t in teachers:
        tb = t.tables
        for category in _groups(t):
            y = teacher_yield(
                _in(category, t.queries).num_rows, _in(category, tb.accepted), _in(category, tb.rejects),
                _in(category, tb.attempts),
            )
            lengths = length_summary(_in(category, tb.accepted).column("completion_tokens"))
            ppl = _perplexities(tb, category)
            rows.append([
                t.label, category, y.queries, y.accepted, _pct(y.accepted, y.queries), _round(y.mean_attempts, 2),
                None if y.tokens_per_accepted is None else round(y.tokens_per_accepted), lengths["p50"],
                None if ppl is None else value_summary(ppl)["mean"],
            ])
    columns = ["teacher", "category", "queries", "accepted", "acceptance %", "mean attempts",
               "generated tokens per accepted", "median response tokens", "mean perplexity"]
    return Section(
        "summary", "Summary",
        "Per teacher and category: how many queries were distilled, how many samples were accepted, how many "
        "generation rounds a finished query took, and what an accepted sample cost in generated tokens (every "
        "logged candidate's completion tokens, rejected ones included, over the accepted samples). Perplexity "
        "appears once jobs.filter has run.",
        [table("summary", "Cost and yield per teacher and category", columns, rows)], [],
    )


def _perplexities(tb: TeacherTables, category: str) -> pa.ChunkedArray | None:
    if tb.filtered is None:
        return None
    kept = [_in(category, t).column("ppl") for t in (tb.filtered, tb.filter_rejects)]
    return pa.chunked_array([c for col in kept for c in col.chunks], pa.float64())


def _length_rows(teachers: list[TeacherRun], pick: Callable[[TeacherTables], tuple[pa.Table, str] | None]) -> list:
    rows = []
    for t in teachers:
        picked = pick(t.tables)
        if picked is None:
            continue
        lengths, column = picked
        for category in _groups(t, lengths):
            s = length_summary(_in(category, lengths).column(column))
            rows.append([t.label, category, s["n"], *(s[f"p{p}"] for p in PERCENTILES), s["under_1024_pct"],
                         s["over_10240_pct"]])
    return rows


def length_section(teachers: list[TeacherRun]) -> Section:
    columns = ["teacher", "category", "samples", *(f"p{p}" for p in PERCENTILES), "% under 1,024",
               "% over 10,240"]
    tables = [table("lengths_accepted", "Response tokens of accepted samples (completion tokens, teacher's tokenizer)",
                    columns, _length_rows(teachers, lambda tb: (tb.accepted, "completion_tokens")))]
    accepted = _labelled(teachers, lambda t: t.tables.accepted.select(["category", "completion_tokens"]))
    figures = [Figure(
        "response_tokens.png",
        "Response length of accepted samples, one panel per category, one outline per teacher; logarithmic bins. "
        "Dashed lines mark 1,024 and 10,240 tokens: a diverse teacher has mass on both sides.",
        plots.response_length_figure(plots.count_lengths(accepted), marks=(SHORT_TOKENS, LONG_TOKENS)),
    )]
    filtered_rows = _length_rows(
        teachers, lambda tb: None if tb.filtered is None else (tb.filtered, "response_tokens")
    )
    if filtered_rows:
        tables.append(table("lengths_filtered", "Response tokens of filtered samples (student's tokenizer)", columns,
                            filtered_rows))
        kept = _labelled([t for t in teachers if t.tables.filtered is not None],
                         lambda t: t.tables.filtered.select(["category", "response_tokens"]))
        figures.append(Figure(
            "response_tokens_filtered.png",
            "Response length of samples kept by jobs.filter, in the student's tokens; logarithmic bins.",
            plots.response_length_figure(plots.count_lengths(kept, "response_tokens"), ylabel="kept samples",
                                         marks=(SHORT_TOKENS, LONG_TOKENS)),
        ))
    return Section(
        "lengths", "Response length",
        "The paper's length-diversity comparison: percentiles of response length, and the share of very short "
        "(under 1,024 tokens) and very long (over 10,240 tokens) responses.",
        tables, figures,
    )


def _labelled(teachers: list[TeacherRun], pick: Callable[[TeacherRun], pa.Table]) -> pa.Table:
    """One table of every teacher's rows, with a `teacher` column holding its label."""
    parts = []
    for t in teachers:
        part = pick(t)
        parts.append(part.append_column("teacher", pa.array([t.label] * part.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else pa.table({"teacher": pa.array([], pa.string())})


def perplexity_section(teachers: list[TeacherRun]) -> Section:
    intro = ("Perplexity of each response under the reference model, from jobs.filter's outputs (kept and filtered "
             "out together, so the filter's own cut does not shape the comparison). The paper reports means of "
             "2.5 (AM-Thinking-v1), 2.9 (DeepSeek-R1) and 3.0 (Qwen3-235B-A22B); lower reads as more coherent.")
    missing = [t.label for t in teachers if t.tables.filtered is None]
    rows = []
    values: dict[str, list[float]] = {}
    for t in teachers:
        if t.tables.filtered is None:
            continue
        for category in _groups(t, t.tables.filtered, t.tables.filter_rejects):
            s = value_summary(_perplexities(t.tables, category))
            rows.append([t.label, category, s["n"], s["mean"], s["p10"], s["p50"], s["p90"]])
        values[t.label] = pc.drop_null(_perplexities(t.tables, ALL)).to_pylist()
    if missing:
        intro += (f" No jobs.filter output for {', '.join(missing)}: run `python -m jobs.filter` on the run folder "
                  "to measure perplexity.")
    tables = [table("perplexity", "Perplexity per teacher and category",
                    ["teacher", "category", "samples", "mean", "p10", "median", "p90"], rows)] if rows else []
    figures = []
    if any(values.values()):
        figures.append(Figure(
            "perplexity.png", "Perplexity of every filtered response, one outline per teacher.",
            plots.histograms_figure([("perplexity", "perplexity", "responses", values)]),
        ))
    return Section("perplexity", "Perplexity", intro, tables, figures)


def verification_section(teachers: list[TeacherRun]) -> Section:
    rows = []
    scores: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    for t in teachers:
        candidates = scored_candidates(t.tables.attempts)
        per_query = pass_rates(t.tables.attempts)
        for category in _groups(t):
            c, q = _in(category, candidates), _in(category, per_query)
            rate = q.column("pass_rate")
            rows.append([
                t.label, category, c.num_rows, _round(pc.mean(c.column("score")).as_py(), 3),
                _pct(pc.sum(pc.is_null(c.column("failure"))).as_py(), c.num_rows), q.num_rows,
                _round(pc.mean(rate).as_py(), 3), _pct(pc.sum(pc.equal(rate, 0.0)).as_py(), q.num_rows),
                _pct(pc.sum(pc.equal(rate, 1.0)).as_py(), q.num_rows),
            ])
        scores[t.label] = candidates.column("score").to_pylist()
        rates[t.label] = per_query.column("pass_rate").to_pylist()
    columns = ["teacher", "category", "candidates", "mean score", "% passed", "queries", "mean pass rate",
               "% queries never passed", "% queries always passed"]
    bins = [i / 20 for i in range(21)]
    return Section(
        "verification", "Verify scores and difficulty",
        "Every scored candidate in the attempts log (failed requests left out). A query's pass rate is the share of "
        "its candidates that passed the run's threshold: 0 for a query the teacher never solved, 1 for one it always "
        "did; it reads as difficulty.",
        [table("verification", "Verify scores and per-query pass rates", columns, rows)],
        [Figure(
            "verification.png",
            "Left: verify score of every scored candidate. Right: per-query pass rate. One outline per teacher.",
            plots.histograms_figure([
                ("verify score of candidates", "verify score", "candidates", scores, bins),
                ("per-query pass rate", "share of the query's candidates that passed", "queries", rates, bins),
            ]),
        )],
    )


def ablation_section(teachers: list[TeacherRun], ablations: dict[str, list[AblationResult]]) -> Section:
    main, spread, per_category = [], [], []
    most_rounds = max((max(r.rounds(), default=0) for rs in ablations.values() for r in rs), default=0)
    curves = {}
    for t in teachers:
        queries = t.queries.num_rows
        category_of = dict(zip(t.queries.column("id").to_pylist(), t.queries.column("category").to_pylist()))
        for result in ablations[t.label]:
            rounds = result.rounds()
            mean = sum(k * v for k, v in rounds.items()) / result.accepted if result.accepted else None
            main.append([t.label, result.threshold, "exact" if result.exact else "lower bound", queries,
                         result.accepted, _pct(result.accepted, queries), _round(mean, 2), result.approximate])
            spread.append([t.label, result.threshold, *(rounds.get(k, 0) for k in range(1, most_rounds + 1))])
        totals = Counter(category_of.values())
        accepted = [Counter(category_of.get(q) for q in r.choices) for r in ablations[t.label]]
        for category in sorted(totals):
            per_category.append([t.label, category, totals[category],
                                 *(_pct(a[category], totals[category]) for a in accepted)])
        curves[t.label] = [(r.threshold, 100 * r.accepted / queries if queries else 0.0, r.exact)
                           for r in ablations[t.label]]
    thresholds = [r.threshold for r in next(iter(ablations.values()), [])]
    own = ", ".join(f"{t.label} {t.accept_threshold:g}" for t in teachers)
    return Section(
        "ablation", "Threshold ablation",
        "What another verify threshold would have kept, recounted from the attempts log without generating again. "
        "A candidate qualifies at threshold T when its score is at least T and it was scored normally (passed, or "
        "failed only for being below the run's threshold); truncated and malformed candidates and failed requests "
        "never qualify. A query is accepted at T in the first round holding a qualifying candidate; a multi-turn "
        "query needs one for every turn. The run stopped generating once a candidate passed its own threshold "
        f"({own}), so counts above it are lower bounds: those rounds were never generated. A multi-turn query whose "
        "earlier turns T would have accepted in another round than the run did is counted as approximate: its later "
        "turns were asked after a different conversation.",
        [
            table("ablation", "Queries accepted per threshold",
                  ["teacher", "threshold", "count is", "queries", "accepted", "accepted %", "mean rounds",
                   "multi-turn, approximate"], main),
            table("ablation_rounds", "Accepted queries by the round that accepted them",
                  ["teacher", "threshold", *(f"round {k}" for k in range(1, most_rounds + 1))], spread),
            table("ablation_categories",
                  "Accepted % per category and threshold (above a run's own threshold: lower bounds)",
                  ["teacher", "category", "queries", *(f"T={th}" for th in thresholds)], per_category),
        ],
        [Figure(
            "threshold_ablation.png",
            "Share of queries accepted at each verify threshold, one line per teacher. Hollow markers are lower "
            "bounds (above the run's own threshold).",
            plots.threshold_figure(curves),
        )],
    )


def rejects_section(teachers: list[TeacherRun]) -> Section:
    distill = {t.label: Counter(t.tables.rejects.column("reason").to_pylist()) for t in teachers}
    filters = {t.label: Counter(t.tables.filter_rejects.column("filter_reason").to_pylist())
               for t in teachers if t.tables.filter_rejects is not None}
    tables = [_reason_table("distill_rejects", "Queries each teacher never got accepted, by reason", distill)]
    if filters:
        tables.append(_reason_table("filter_rejects", "Samples jobs.filter removed, by filter", filters))
    intro = ("Why queries ended without a sample (distill rejects: `exhausted` means every round's candidates "
             "failed), and why jobs.filter removed accepted samples.")
    if not filters:
        intro += " jobs.filter has not run on these runs."
    return Section("rejects", "Rejects and filters", intro, tables, [])


def _reason_table(table_id: str, caption: str, counts: dict[str, Counter[str]]) -> dict[str, Any]:
    reasons = sorted(set().union(*counts.values())) if counts else []
    rows = [[label, sum(c.values()), *(c.get(r, 0) for r in reasons)] for label, c in counts.items()]
    return table(table_id, caption, ["teacher", "total", *reasons], rows)


# ---- the dataset at another threshold ------------------------------------------------------------------------------


def check_writable(store: Store, teacher: TeacherRun) -> None:
    """`--write-threshold` rebuilds samples from the candidates' text: refuse a teacher whose log has none."""
    if not teacher.config.get("log_text", True):
        raise ConfigError(f"runs {teacher.run}: teacher {teacher.tables.name} ran with log_text: false, so its "
                          "attempts log holds no candidate text to write a dataset from")
    if not has_text(store, teacher.tables.name):
        raise ConfigError(f"runs {teacher.run}: teachers/{teacher.tables.name}/attempts has no `text` column (a run "
                          "from before the attempts log kept candidates' text), so no dataset can be written from it")


def write_threshold_dataset(
    store: Store, teacher: TeacherRun, threshold: float, output: Store, relpath: str
) -> dict[str, Any]:
    """The samples `teacher` would have kept at `threshold` (`pipeline.ablation.threshold_samples`), as one
    SAMPLE_SCHEMA Parquet file in `relpath` of `output`, replacing what an earlier analysis wrote there."""
    from pipeline.ablation import threshold_samples

    attempts = store.read_table(f"teachers/{teacher.tables.name}/attempts",
                                columns=[c for c in ATTEMPT_SCHEMA.names if c != "teacher"])
    result = ablate_teacher(teacher, threshold, attempts)
    queries = store.read_table("queries", columns=["id", "category", "messages", "source"]).to_pylist()
    dataset = threshold_samples(result, attempts, {q["id"]: q for q in queries}, teacher.tables.name,
                                teacher.config.get("response_format", "think_answer"))
    output.remove(relpath)
    output.write_shard(relpath, "samples.parquet", pa.Table.from_pylist(dataset.rows, schema=SAMPLE_SCHEMA))
    return {"teacher": teacher.label, "threshold": threshold, "exact": result.exact, "accepted": result.accepted,
            "written": len(dataset.rows), "not_written": dataset.not_written, "path": output.path(relpath)}


def datasets_section(written: list[dict[str, Any]]) -> Section:
    reasons = sorted({r for w in written for r in w["not_written"]})
    rows = [[w["teacher"], w["threshold"], "exact" if w["exact"] else "lower bound", w["accepted"], w["written"],
             *(w["not_written"].get(r, 0) for r in reasons), w["path"]] for w in written]
    return Section(
        "datasets", "Datasets written",
        "The samples each teacher would have kept at the chosen threshold: per accepted query, the best qualifying "
        "candidate of its first qualifying round, parsed with the teacher's response format. Each folder is a "
        "jobs.train source. Multi-turn queries whose conversation would have differed (`multi_turn_history`) and "
        "answers the response format cannot split (`unparseable_…`) are counted and not written.",
        [table("datasets", "Datasets written", ["teacher", "threshold", "count is", "accepted", "written",
                                                *(f"not written: {r}" for r in reasons), "path"], rows)],
        [],
    )
