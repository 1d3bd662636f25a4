"""Write GSM8K or MATH reference solutions as accepted samples (the paper's format), for training without a teacher.

    python -m jobs.reference_samples --input ../shared/data/queries/gsm8k_train.jsonl \\
        --output out/reference/teachers/reference/accepted --limit 512
"""

import argparse
import sys

import pyarrow as pa

from pipeline.loaders import source_name
from pipeline.reference_samples import reference_samples
from pipeline.schema import SAMPLE_SCHEMA
from pipeline.storage import Store, filesystem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="GSM8K or MATH JSONL, local or object storage")
    parser.add_argument("--output", required=True, help="folder for the Parquet file (an `accepted/` folder)")
    parser.add_argument("--limit", type=int, help="first N samples only")
    args = parser.parse_args(argv)

    fs, path = filesystem(args.input)
    with fs.open(path, "r") as f:
        samples = []
        for sample in reference_samples(f, source_name(args.input)):
            samples.append(sample.model_dump(mode="json"))
            if args.limit and len(samples) >= args.limit:
                break
    table = pa.Table.from_pylist(samples, schema=SAMPLE_SCHEMA)
    written = Store(args.output).write_shard("", f"part-{source_name(args.input)}.parquet", table)
    print(f"{table.num_rows} samples -> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
