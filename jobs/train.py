"""Fine-tune a student on accepted samples with Ray Train (DeepSpeed ZeRO or FSDP2), then export it for vLLM.

    python -m jobs.train --config configs/train_cpu.yaml
    ray job submit --working-dir . -- python -m jobs.train --config configs/train_paper.yaml

Running the same command again resumes from the run's latest checkpoint. Exit code 2: a bad config, a source that
is missing, unreadable or smaller than one step of `global_batch_samples`, or an output that cannot be written,
reported before Ray starts.
"""

import argparse
import sys

from pipeline.config import ConfigError, TrainConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config (see configs/train_*.yaml)")
    parser.add_argument("--output", help="override the config's output folder")
    args = parser.parse_args(argv)
    try:
        config = load_config(TrainConfig, args.config)
        if args.output:
            config = config.model_copy(update={"output": args.output})
        from actors.train_run import format_summary, run_train

        summary = run_train(config)
    except ConfigError as err:  # also from the run's checks, and from an output holding another config's run
        print(err, file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
