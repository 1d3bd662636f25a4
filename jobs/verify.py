"""Score responses that already exist: audit distilled data from elsewhere, or re-score after a verifier upgrade.

    python -m jobs.verify --input IN [IN ...] --output OUT [--config FILE]

IN: JSONL or Parquet rows in the query format plus `response`. OUT (.jsonl or .parquet): the same rows, in the same
order, with `verify_score`, `verifier` and `verify_details` added; an unreadable row gets score 0 and its reason.
"""

import argparse
import json
import sys

from pipeline.config import ConfigError, VerifyJobConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--config", help="YAML: response_format, verifiers, storage_options, ray")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(VerifyJobConfig, args.config)
        from actors.verify_run import run_verify

        summary = run_verify(args.input, args.output, config, progress=not args.no_progress)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
