"""Evaluate models on reasoning benchmarks: n samples per problem, each scored by distillery's verifiers.

    python -m jobs.evaluate --config configs/evaluate.yaml
    ray job submit --working-dir . -- python -m jobs.evaluate --config configs/evaluate.yaml

The output folder gets every sample with its score (models/MODEL/BENCHMARK/samples/, Parquet), results.json (pass@1
with its standard error, pass@k, cons@k, response lengths, truncation, and the protocol: model hash, vLLM version,
sampling, seeds, prompts) and report/report.html. Running the same command again continues a killed evaluation
without generating a finished problem again. A bad config, model path or benchmark file ends the job with exit
status 2 and a message naming the field, before Ray starts.
"""

import argparse
import sys

from pipeline.config import ConfigError, EvaluateConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML evaluation config (configs/evaluate.yaml)")
    parser.add_argument("--output", help="override the config's output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    try:
        config = load_config(EvaluateConfig, args.config)
        if args.output:
            config = config.model_copy(update={"output": args.output})
        from actors.evaluate_run import format_results, run_evaluate

        results = run_evaluate(config, progress=not args.no_progress)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(format_results(results))
    stopped = [run["stopped"] for run in results["this_run"].values() if run["stopped"]]
    for message in stopped:  # an engine or endpoint failed every request: the evaluation is not complete
        print(f"[distillery] {message}", file=sys.stderr)
    return 1 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
