"""Score responses that already exist: audit distilled data from elsewhere, or re-score after a verifier upgrade.

    python -m jobs.verify --input IN [IN ...] --output OUT [--config FILE]

IN: JSONL or Parquet rows in the query format plus `response`, files or folders, local or s3://. OUT (.parquet, else
JSONL): the same rows, in the same order, with `verify_score`, `verifier` and `verify_details` added; an unreadable
row gets score 0 and its reason. OUT appears whole when every row is scored, never in part.

IN may also be a distill run's attempts log, RUN/teachers/NAME/attempts: every candidate the teacher generated is
scored again (after a verifier change, say) with its query from RUN/queries and its teacher's response format; its
row carries the candidate as `response` and the attempt's fields (teacher, attempt, candidate, turn, the score and
failure logged then) under `attempt`. Candidates of failed requests, or of a teacher with `log_text: false`, come
back as `missing_response`.

FILE's `response_format` says how the responses are written: think_answer (the default,
<think>…</think><answer>…</answer>), think_then_answer (<think>…</think> then the answer), plain (reasoning, then
the answer on the last line or in the last code block) or answer_only (the whole response is the answer, for
systems that show no reasoning; a leading <think>…</think> is taken off).
Exit code 2: a bad config, input or output, reported before anything starts.
"""

import argparse
import json
import sys

from pipeline.config import ConfigError, VerifyJobConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True, help="JSONL or Parquet files or folders of responses")
    parser.add_argument("--output", required=True, help="the scored rows: a .parquet or a JSONL file")
    parser.add_argument("--config", help="YAML: response_format, verifiers, judge, storage_options, ray")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
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
