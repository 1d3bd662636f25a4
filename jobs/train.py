"""Fine-tune a student on accepted samples with Ray Train (DeepSpeed ZeRO or FSDP2), then export it for vLLM.

    python -m jobs.train --config configs/train_cpu.yaml
    ray job submit --working-dir . -- python -m jobs.train --config configs/train_paper.yaml

Running the same command again resumes from the run's latest checkpoint.
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
    except ConfigError as err:  # also from the run: a source without Parquet files, an output holding another run
        print(err, file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
