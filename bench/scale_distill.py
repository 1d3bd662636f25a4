"""Benchmark: a distill run of many queries, killed twice and resumed; the driver's memory must stay flat.

N queries (plus a few rows that repeat an earlier id) × 2 teachers through `jobs.distill`'s real pipeline: ingest,
Ray Data, the teacher stage and its regenerate loop, the verifier actors, the ShardWriter and resume. Only the engine
is SIMULATED (`bench/simulated_engine.py`, one or two tokens a candidate, every answer right) so that a 2-core host gets
through a million queries. The queries are one-digit sums asked as multiple choice (`science` with a label as the
reference), so the cheap choice verifier scores them: Math-Verify (about 310 a second per core) would time the
verifiers, not the driver.

The run is a child process in a session of its own. It is killed with SIGKILL of its whole process group twice, each
time once a random share of the work is committed, and started again with the same config; the third start runs to
the end. Then every teacher must hold each query exactly once across `accepted/` and `rejects/` (0 lost, 0
duplicated), and ingest must have kept the first row of each repeated id.

Reported: total wall time (kills and restarts included), queries per second, and the driver's peak RSS and USS
(psutil, sampled every 0.2 s, of the driver process alone), per start and over all; also the largest RSS of any one
other process of the run (a Ray worker, the raylet), the "each task" side of the same question.

The k-th of K kills comes at a random share of the work in the k-th of K+1 equal spans (±1/4 of a span), so no
start runs much more than half the work: on a shared host, `--lock FILE` takes that file's lock (as `flock FILE`
does) for each start alone, so others wait for one start at a time, never the whole run.

    python -m bench.scale_distill [--queries 1000000] [--kills 2] [--seed 0] [--lock /tmp/ray.lock]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from pipeline.storage import Store

TEACHERS = ["sim-a", "sim-b"]
DUPLICATE_EVERY = 1000  # one row in this many repeats an earlier id: ingest's duplicate check has work to do


def write_corpus(path: Path, count: int, rng: random.Random) -> int:
    """`count` distinct queries, and a row repeating an earlier id every DUPLICATE_EVERY rows; returns the repeats."""
    repeats = 0
    with open(path, "w") as f:
        for i in range(count):
            a = rng.randint(1, 4)
            b = rng.randint(1, 9 - a)  # the sum is a label 1-9: the choice verifier's reference
            row = {"id": f"q-{i}", "category": "science", "prompt": f"What is {a} + {b}?",
                   "reference": {"answer": str(a + b)}}
            f.write(json.dumps(row) + "\n")
            if i and i % DUPLICATE_EVERY == 0:
                f.write(json.dumps({**row, "id": f"q-{rng.randrange(i)}"}) + "\n")
                repeats += 1
    return repeats


def config(work: Path, corpus: Path) -> dict:
    teacher = {
        "model": "simulated",
        "engine": {
            "batch_size": 256,
            "batches_in_flight": 4,
            "engine_kwargs": {"step_s": 1e-5, "max_num_seqs": 1024, "pass_rate": 1.0, "min_tokens": 1,
                              "max_tokens": 2},
        },
        "sampling": {"default": {"n": 1, "max_tokens": 2}},
        "max_attempts": 1,
    }
    return {
        "input": {"paths": [str(corpus)]},
        "output": str(work / "out"),
        "teachers": [{**teacher, "name": name} for name in TEACHERS],
        "verifiers": {"replicas": 2, "num_cpus": 0.25},
        "ray": {"dashboard": False},
        "shard_rows": 4096,
    }


def child(config_path: str) -> None:
    """The driver: `run_distill` with the simulated engine."""
    from actors.distill_run import format_summary, run_distill
    from pipeline.config import DistillConfig, load_config

    summary = run_distill(load_config(DistillConfig, config_path), progress=False,
                          engine_class="bench.simulated_engine:SimulatedEngine")
    print(format_summary(summary), flush=True)


class Sampler:
    """Peak RSS of the driver process and of the largest other process in its session, sampled in a thread; and the
    driver's peak USS, its memory alone: RSS also counts the pages of Ray's shared object store that it has read
    blocks from (bounded by the store's size, not the driver's to free)."""

    def __init__(self, driver: psutil.Process):
        self.driver, self.driver_peak, self.driver_peak_uss, self.other_peak = driver, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                memory = self.driver.memory_full_info()
                self.driver_peak = max(self.driver_peak, memory.rss)
                self.driver_peak_uss = max(self.driver_peak_uss, memory.uss)
                others = self.driver.children(recursive=True)
            except psutil.Error:
                continue
            for process in others:
                try:
                    self.other_peak = max(self.other_peak, process.memory_info().rss)
                except psutil.Error:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def committed(store: Store) -> int:
    return sum(store.count_rows(f"teachers/{t}/{folder}") for t in TEACHERS for folder in ("accepted", "rejects"))


def kill_session(run: subprocess.Popen) -> None:
    """SIGKILL the run's process group, then whatever of its session is left (Ray daemons start their own groups)."""
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == run.pid:
                process.kill()
        except (OSError, psutil.Error):
            pass


def start(config_path: Path, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.scale_distill", "--child", str(config_path)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


@contextmanager
def locked(path: str):
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check(store: Store, queries: int, repeats: int) -> dict:
    """0 lost, 0 duplicated per teacher; ingest kept every distinct id once and rejected each repeat."""
    query_ids = store.read_table("queries", columns=["id"]).column("id")
    rejects = store.read_table("rejects", columns=["reason"])
    rejects = [] if rejects is None else rejects.column("reason").to_pylist()
    assert len(query_ids) == queries == len(pc.unique(query_ids)), "every distinct id once in queries/"
    assert rejects == ["duplicate_id"] * repeats, "each repeated id rejected, nothing else"
    result = {}
    for teacher in TEACHERS:
        tables = [store.read_table(f"teachers/{teacher}/{f}", columns=["id"]) for f in ("accepted", "rejects")]
        ids = pa.chunked_array([c for t in tables if t is not None for c in t.column("id").chunks], pa.string())
        duplicated = len(ids) - len(pc.unique(ids))
        lost = queries - len(pc.unique(ids))
        assert pc.all(pc.is_in(ids, value_set=query_ids.combine_chunks())).as_py(), "no id outside queries/"
        result[teacher] = {"lost": lost, "duplicated": duplicated}
        assert lost == 0 and duplicated == 0, result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lock", help="hold this file's lock (flock) during each start of the run")
    parser.add_argument("--work", help="folder for the corpus and the run (default: a new temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="scale-distill-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    repeats = write_corpus(corpus, args.queries, rng)
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config(work, corpus)))
    store = Store(str(work / "out"))
    log = work / "run.log"
    total = args.queries * len(TEACHERS)
    span = 1 / (args.kills + 1)
    kill_at = [(k + 1 + rng.uniform(-0.25, 0.25)) * span for k in range(args.kills)]

    starts = []
    for at in [*kill_at, None]:
        with locked(args.lock) if args.lock else nullcontext():
            begun = time.monotonic()
            run = start(config_path, log)
            sampler = Sampler(psutil.Process(run.pid))
            while at is not None and run.poll() is None and committed(store) < at * total:
                time.sleep(0.5)
            if at is not None:
                assert run.poll() is None, f"the run ended before its kill at {at:.0%}: see {log}"
                kill_session(run)
            else:
                assert run.wait() == 0, f"the run failed: see {log}"
            sampler.stop()
        starts.append({"killed_at": None if at is None else f"{committed(store) / total:.0%} committed",
                       "wall_s": round(time.monotonic() - begun, 1),
                       "driver_peak_rss_mb": round(sampler.driver_peak / 2**20),
                       "driver_peak_uss_mb": round(sampler.driver_peak_uss / 2**20),
                       "other_process_peak_rss_mb": round(sampler.other_peak / 2**20)})
        # Each start's figures as it ends: a bench stopped before the end still tells what it measured.
        print(json.dumps({"start": len(starts), **starts[-1]}), file=sys.stderr, flush=True)
    wall_s = sum(s["wall_s"] for s in starts)  # waits for the lock left out
    summary = json.loads(store.read_text("summary.json"))
    result = {
        "queries": args.queries,
        "teachers": len(TEACHERS),
        "repeated_ids": repeats,
        "checks": check(store, args.queries, repeats),
        "starts": starts,
        "wall_s": round(wall_s, 1),
        "queries_per_s": round(total / wall_s, 1),  # teacher-queries committed per second, restarts included
        "driver_peak_rss_mb": max(s["driver_peak_rss_mb"] for s in starts),
        "driver_peak_uss_mb": max(s["driver_peak_uss_mb"] for s in starts),
        "last_start": {"wall_s": summary["wall_s"], "input": summary["input"]},
        "work": str(work),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
