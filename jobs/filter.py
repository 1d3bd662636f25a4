"""Quality-filter a distill run's accepted samples: perplexity, n-gram repetition, length and structure.

    python -m jobs.filter --run DIR [--config FILE] [--teachers NAME ...]

DIR: a `jobs.distill` output, local or s3://. For each teacher (or those named), `teachers/NAME/filtered/` gets the
samples that pass (every sample column plus `ppl`, `response_tokens`, `max_ngram_count`, and a dataset card
README.md: `datasets.load_dataset("parquet", data_files="DIR/teachers/NAME/filtered/*.parquet")` or a training
source), `teachers/NAME/filter_rejects/` every other one with `filter_reason` and `filter_detail`, and
`teachers/NAME/filter_summary.json` the counts and the thresholds applied. Scores are kept in
`teachers/NAME/filter_scores/`: a killed run resumes, and a run with new thresholds only re-decides.

A bad config, run folder or teacher name ends the job with exit status 2 and a one-line message, before Ray starts.
"""

import argparse
import sys

from pipeline.config import ConfigError, FilterConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.filter", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, metavar="DIR", help="a jobs.distill output folder, local or s3://")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML: student, max_tokens, ngram, perplexity, storage_options, ray (configs/filter.yaml)")
    parser.add_argument("--teachers", nargs="+", metavar="NAME", help="filter only these teachers (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    try:
        config = load_config(FilterConfig, args.config)
        from actors.filter_run import format_summary, run_filter  # checks the run before Ray starts

        summary = run_filter(args.run, config, args.teachers, progress=not args.no_progress)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
