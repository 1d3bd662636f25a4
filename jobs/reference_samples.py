"""Write GSM8K or MATH reference solutions as accepted samples (the paper's format), for training without a teacher.

    python -m jobs.reference_samples --input ../shared/data/queries/gsm8k_train.jsonl \\
        --output out/reference/teachers/reference/accepted --limit 512

Rows of other shapes are skipped; a file without any GSM8K or MATH row with a final answer is refused (exit code 2),
as are a missing input and an output folder that cannot be written, before anything is written.
"""

import argparse
import sys
from itertools import islice

import pyarrow as pa

from pipeline.checks import check_inputs, check_output
from pipeline.config import ConfigError
from pipeline.loaders import source_name
from pipeline.reference_samples import reference_samples
from pipeline.schema import SAMPLE_SCHEMA
from pipeline.storage import Store, filesystem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="one GSM8K or MATH JSONL file, local or object storage")
    parser.add_argument("--output", required=True, help="folder for the Parquet file (an `accepted/` folder)")
    parser.add_argument("--limit", type=int, help="first N samples only")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    source = source_name(args.input)
    try:
        check_inputs([args.input])
        check_output(args.output)
        fs, path = filesystem(args.input)
        if fs.isdir(path):
            raise ConfigError(f"{args.input}: is a folder; name one GSM8K or MATH JSONL file")
        with fs.open(path, "rb") as f:
            samples = [s.model_dump(mode="json") for s in islice(reference_samples(f, source), args.limit)]
        if not samples:
            raise ConfigError(f"{args.input}: no GSM8K rows (question, answer ending in `#### N`) or MATH rows "
                              "(problem, solution with a final \\boxed{}) in this file")
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    table = pa.Table.from_pylist(samples, schema=SAMPLE_SCHEMA)
    written = Store(args.output).write_shard("", f"part-{source}.parquet", table)
    print(f"{table.num_rows} samples -> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
