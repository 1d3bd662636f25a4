"""Distill a query corpus from one or more teachers into verified datasets.

    python -m jobs.distill --config configs/demo.yaml
    ray job submit --working-dir . -- python -m jobs.distill --config configs/demo.yaml
"""

import argparse
import sys

from pipeline.config import ConfigError, DistillConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML run config (see configs/)")
    parser.add_argument("--output", help="override the config's output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    try:
        config = load_config(DistillConfig, args.config)
        if args.output:
            config = config.model_copy(update={"output": args.output})
        from actors.distill_run import format_summary, run_distill

        summary = run_distill(config, progress=not args.no_progress)
    except ConfigError as err:  # also from the run: a missing input, an output folder holding another config's run
        print(err, file=sys.stderr)
        return 2
    print(format_summary(summary))
    for message in summary["stopped"]:  # a teacher's endpoint failed every request: the run is not complete
        print(f"[distillery] {message}", file=sys.stderr)
    return 1 if summary["stopped"] else 0


if __name__ == "__main__":
    sys.exit(main())
