"""Compare the teachers of distill runs in one HTML report: cost and yield, response lengths, perplexity, verify
scores and difficulty, a threshold ablation from the attempts log, rejects and filters, per category.

    python -m jobs.analyze --runs RUN [RUN ...] --output REPORT_DIR [--thresholds 0.7 0.8 0.9 1.0]
                           [--write-threshold T] [--storage-options JSON]

RUN: a jobs.distill output folder, local or s3://. With several runs a teacher is labelled RUNNAME/TEACHER
(RUNNAME: the folder's name). REPORT_DIR gets report.html (self-contained: figures embedded), report.json (every
number the page shows) and figures/*.png. --write-threshold T also writes, per teacher, the samples a run at
threshold T would have kept, to REPORT_DIR/datasets/LABEL/threshold_T/ (a jobs.train source); it needs the
candidates' text in the attempts log (a run with log_text: true, from after the log kept text).
Exit code 2: a bad run folder, output or option, reported before anything is read or written.
"""

import argparse
import json
import sys

from pipeline.ablation import DEFAULT_THRESHOLDS
from pipeline.checks import check_output, filesystem_for
from pipeline.config import ConfigError
from pipeline.report import (
    build_report, check_run, check_writable, datasets_section, read_run, write_threshold_dataset,
)
from pipeline.report_html import render_html
from pipeline.storage import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="jobs.distill output folders, local or s3://")
    parser.add_argument("--output", required=True, metavar="REPORT_DIR",
                        help="folder for report.html, report.json and figures/")
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(DEFAULT_THRESHOLDS), metavar="T",
                        help="verify thresholds of the ablation (default: %(default)s)")
    parser.add_argument("--write-threshold", type=float, metavar="T",
                        help="also write each teacher's dataset at this threshold")
    parser.add_argument("--storage-options", type=json.loads, default={}, metavar="JSON",
                        help='fsspec options for s3:// paths, as JSON, e.g. \'{"endpoint_url": "http://..."}\'')
    args = parser.parse_args(argv)
    try:
        summary = analyze(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def analyze(args: argparse.Namespace) -> dict:
    for name, value in [("thresholds", t) for t in args.thresholds] + [("write-threshold", args.write_threshold)]:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name} {value}: a verify threshold is between 0 and 1")
    stores = []
    for url in args.runs:
        filesystem_for("runs", url, args.storage_options)  # an unknown protocol is refused with the path
        stores.append(Store(url, args.storage_options))
        check_run(stores[-1])
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in args.runs]
    if len(set(names)) < len(names):
        raise ConfigError(f"--runs {' '.join(args.runs)}: two run folders have the same name, so their teachers' "
                          "labels would clash; rename one")
    check_output(args.output, args.storage_options)
    runs = [(store, teacher) for store in stores for teacher in read_run(store, label_with_run=len(stores) > 1)]
    if args.write_threshold is not None:
        for store, teacher in runs:
            check_writable(store, teacher)

    teachers = [teacher for _, teacher in runs]
    sections = build_report(teachers, args.thresholds)
    output = Store(args.output, args.storage_options)
    written = [
        write_threshold_dataset(store, teacher, args.write_threshold, output,
                                f"datasets/{teacher.label}/threshold_{args.write_threshold:g}")
        for store, teacher in runs
    ] if args.write_threshold is not None else []
    if written:
        sections.append(datasets_section(written))
    run_info = [{"path": store.url, "teachers": [t.tables.name for s, t in runs if s is store],
                 "accept_thresholds": {t.tables.name: t.accept_threshold for s, t in runs if s is store}}
                for store in stores]
    report = {"runs": run_info, "teachers": [t.label for t in teachers], "thresholds": args.thresholds,
              "sections": [s.as_json() for s in sections]}
    for section in sections:
        for figure in section.figures:
            output.write_bytes(f"figures/{figure.name}", figure.png)
    output.write_text("report.json", json.dumps(report, indent=2))
    output.write_text("report.html", render_html("Distillation sources compared", run_info, sections))
    return {"report": output.path("report.html"), "teachers": report["teachers"], "datasets": written}


if __name__ == "__main__":
    sys.exit(main())
