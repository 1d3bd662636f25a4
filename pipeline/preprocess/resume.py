"""Which steps of `jobs.preprocess` a run can take whole from an unfinished run, and which it must compute.

Each step's output (every stream row after that step) is committed under `_staging/<run>/steps/<step>/`, and only
then is its `_SUCCESS` marker written: the rows per outcome after the step, the seconds it took, when it was
committed, and the step's hash. A step's hash covers the settings its output depends on and, through the previous
step's hash, everything before it; so a marker whose hash matches the plan's says the output is what this run would
compute. A new run takes the longest prefix of matching markers it finds in any unfinished run (`resume_from`,
`choose_staging`) and computes the rest: after a kill it continues from the first unfinished step; after a changed
setting, from the first step that depends on it (a near-duplicate threshold reuses parsing and exact dedup).

Settings are assigned to steps by exclusion, so a config field added later invalidates the step that may use it, or
an earlier one, never none: parse/filter depends on everything except the near-duplicate threshold (which only picks
the LSH bands; MinHash signatures are computed while parsing) and decontamination; near dedup on the whole
`dedup.near`; decontamination by exact and n-gram match on `decontamination` without `embedding`, and on the
benchmark items themselves; embeddings on `decontamination.embedding`. Where the run happens (`ray`,
`storage_options`) is left out, as in the config hash. Must never import Ray.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import PreprocessConfig, data_settings
from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.storage import Store, atomic_output, data_files, filesystem

STEPS = ("parse_filter", "exact_dedup", "near_dedup", "decontaminate", "embedding")
MARKER = "_SUCCESS"


@dataclass(frozen=True)
class Step:
    name: str
    hash: str  # this step's settings and the previous step's hash


@dataclass(frozen=True)
class StepMarker:
    """The `_SUCCESS` of a committed step."""

    step: str
    hash: str
    outcomes: dict[str, int]  # rows per reason after the step; `open` for rows no step has rejected yet
    seconds: float
    committed_at: str  # UTC, ISO 8601: a reused step shows the time of the run that computed it

    @property
    def rows(self) -> int:
        return sum(self.outcomes.values())


def step_settings(
    config: PreprocessConfig, input_files: list[list[Any]], benchmarks: dict[str, list[BenchmarkItem]]
) -> dict[str, Any]:
    """The settings each step that runs depends on, in step order. A step that has nothing to do (no near dedup, no
    benchmark items, no embedding model) is left out; the next one reads the output of the one before it."""
    dump = config.model_dump(mode="json", exclude={"ray", "storage_options"})
    dedup, decontamination = dump.pop("dedup"), dump.pop("decontamination")
    near = dedup.pop("near")
    embedding = decontamination.pop("embedding")
    signatures = None if near is None else {k: v for k, v in near.items() if k != "threshold"}
    settings: dict[str, Any] = {
        "parse_filter": {**dump, "dedup": dedup, "signatures": signatures, "input_files": input_files},
        "exact_dedup": {},
    }
    if near is not None:
        settings["near_dedup"] = near
    if any(benchmarks.values()):
        items = {path: [[item.id, item.source, item.text] for item in file_items]
                 for path, file_items in benchmarks.items()}
        settings["decontaminate"] = {**decontamination, "items": _digest(items)}
        if embedding is not None:  # without its scale settings: more replicas embed the same
            settings["embedding"] = data_settings(config.decontamination.embedding)
    return settings


def plan_steps(settings: dict[str, Any]) -> list[Step]:
    """The steps in order, each hashed with the previous one, so a change invalidates every step after it."""
    plan: list[Step] = []
    for name in STEPS:
        if name in settings:
            previous = plan[-1].hash if plan else None
            plan.append(Step(name, _digest({"previous": previous, "step": name, "settings": settings[name]})))
    return plan


def resume_from(plan: list[Step], markers: dict[str, StepMarker]) -> int:
    """How many leading steps of `plan` the committed `markers` (step name → marker) already hold."""
    for done, step in enumerate(plan):
        marker = markers.get(step.name)
        if marker is None or marker.hash != step.hash:
            return done
    return len(plan)


def choose_staging(plan: list[Step], runs: dict[str, dict[str, StepMarker]]) -> tuple[str | None, int]:
    """The unfinished run (run tag → its markers) holding the most leading steps of `plan`, the newest among equals,
    and that number; (None, 0) when none holds the first step."""
    best: tuple[str | None, int] = (None, 0)
    for tag in sorted(runs):  # tags sort by start time
        reusable = resume_from(plan, runs[tag])
        if reusable and reusable >= best[1]:
            best = (tag, reusable)
    return best


# ---- the markers and inputs in storage ------------------------------------------------------------------------------


def step_folder(staging: str, step: str) -> str:
    return posixpath.join(staging, "steps", step)


def staged_markers(store: Store, staging_root: str = "_staging") -> dict[str, dict[str, StepMarker]]:
    """Every committed step of every unfinished run under `staging_root`: run tag → step name → marker."""
    store.fs.invalidate_cache()  # another process (the killed run) wrote them
    runs: dict[str, dict[str, StepMarker]] = {}
    for path in store.fs.glob(store.path(staging_root, "*", "steps", "*", MARKER)):
        *_, tag, _, step, _ = path.split("/")
        with store.fs.open(path, "r") as f:
            text = f.read()
        try:
            runs.setdefault(tag, {})[step] = StepMarker(**json.loads(text))
        except (ValueError, TypeError):  # a marker another version of this code wrote: its step is computed again
            continue
    return runs


def commit_marker(store: Store, staging: str, marker: StepMarker, storage_options: dict[str, Any]) -> None:
    """Written in one piece (renamed or uploaded whole), after the step's output: its presence marks it complete."""
    url = f"{store.url.rstrip('/')}/{step_folder(staging, marker.step)}/{MARKER}"
    with atomic_output(url, storage_options) as path, open(path, "w") as f:
        json.dump(asdict(marker), f, indent=2)


def input_files(inputs: list[str], storage_options: dict[str, Any]) -> list[list[Any]]:
    """Every input file with its size and version (its ETag on object storage, its mtime on a disk), in input order:
    a file changed since an unfinished run is parsed again."""
    files = []
    for url in inputs:
        fs, path = filesystem(url, storage_options)
        for file in data_files(fs, path):
            info = fs.info(file)
            version = info.get("ETag") or info.get("mtime") or info.get("LastModified")
            files.append([file, info.get("size"), str(version)])
    return files


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
