"""The paper's experiment in one command: queries → preprocess → distill (every teacher over the same ids) → filter →
one student per teacher (and one on all of them) → evaluate every student and the base model → report.

    python -m jobs.experiment --config configs/experiment_demo.yaml [--plan]
    ray job submit --working-dir . -- python -m jobs.experiment --config configs/experiment_paper.yaml

Each phase runs its job (python -m jobs.X) in a subprocess, with a config written to OUTPUT/experiment/phases/, and
keeps its outputs: OUTPUT/preprocess, OUTPUT/distill (filtered in place), OUTPUT/train/STUDENT, OUTPUT/evaluate,
OUTPUT/report (report.html, results.json). The plan is printed first: running the same command again reuses finished
phases, continues an unfinished one where its job stopped, and re-runs a phase whose settings or inputs changed, with
every phase after it. A bad field anywhere, or a missing query or benchmark file, ends the job with exit status 2 and
a message naming it, before any phase starts; a phase that fails ends it with that job's exit status.
"""

import argparse
import json
import sys

from pipeline.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.experiment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML experiment config (configs/experiment_*.yaml)")
    parser.add_argument("--plan", action="store_true", help="print what a run would do, and do nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    from pipeline.experiment import (
        Runner, absolute, check_paths, format_plan, load_experiment, plan_phases, read_records,
    )
    from pipeline.storage import Store

    try:
        config, phases = load_experiment(args.config)
        check_paths(config, phases)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    store = Store(absolute(config.output), config.storage_options)
    steps = plan_phases(phases, read_records(store))
    print(format_plan(steps), flush=True)
    if args.plan:
        return 0

    def report(phase) -> dict:
        from pipeline.experiment_report import write_experiment_report

        results = write_experiment_report(store.url, phase.settings["students"], config.storage_options)
        return {model: {b: s and s["pass@1"] for b, s in numbers["benchmarks"].items()}
                for model, numbers in results["models"].items()}

    status = Runner(store, config.storage_options, progress=not args.no_progress, report=report).run(steps)
    if status == 0:
        from pipeline.experiment_report import table1_markdown

        print(table1_markdown(json.loads(store.read_text("report/results.json"))))
        print(f"[experiment] report: {store.url.rstrip('/')}/report/report.html", flush=True)
    return status

if __name__ == "__main__":
    sys.exit(main())
