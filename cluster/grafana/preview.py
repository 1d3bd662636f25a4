"""The dashboard as Grafana would draw it, without Grafana: every panel of `cluster/grafana/distillery.json`, its
PromQL asked of a real Prometheus over a time range, drawn in the panel's place on the grid, as one PNG.

    prometheus --config.file=...            # scraping the run's metrics port (the job prints it as it starts)
    python cluster/grafana/preview.py --prometheus http://127.0.0.1:9090 --start 2026-12-03T05:00:00Z \\
        --end 2026-12-03T05:40:00Z --output dashboard.png

Grafana's variables are given the values a viewer of the whole range would pick: every teacher, a rate window of
four scrape intervals, the range itself. A panel whose queries return nothing says so in its frame, so the picture
also checks that every query finds the run's series.
"""

from __future__ import annotations

import argparse
import json
import math
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

DASHBOARD = Path(__file__).with_name("distillery.json")
GRID_COLUMNS = 24


def substitute(expr: str, rate_interval_s: int, range_s: int) -> str:
    """A panel's PromQL with Grafana's variables given values."""
    return (expr.replace('=~"$teacher"', '=~".*"').replace("$__rate_interval", f"{rate_interval_s}s")
            .replace("$__range", f"{range_s}s"))


def legend(template: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def query_range(prometheus: str, expr: str, start: float, end: float, step_s: int) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step_s})
    with urllib.request.urlopen(f"{prometheus.rstrip('/')}/api/v1/query_range?{params}", timeout=30) as reply:
        body = json.load(reply)
    if body["status"] != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def draw(prometheus: str, start: float, end: float, output: Path, scrape_s: int = 5) -> dict[str, int]:
    """Draw every panel; returns the number of series each titled panel found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    step_s = max(scrape_s, int((end - start) / 300))
    rate_s, range_s = 4 * scrape_s, int(end - start)
    figure = plt.figure(figsize=(18, rows * 0.42))
    found: dict[str, int] = {}
    for panel in panels:
        grid = panel["gridPos"]
        left, width = grid["x"] / GRID_COLUMNS, grid["w"] / GRID_COLUMNS
        bottom, height = 1 - (grid["y"] + grid["h"]) / rows, grid["h"] / rows
        if panel["type"] == "row":  # a section heading across the grid
            figure.text(0.005, bottom + height / 2, panel["title"], fontsize=13, weight="bold", va="center")
            continue
        axes = figure.add_axes((left + 0.07 * width, bottom + 0.18 * height, 0.9 * width, 0.62 * height))
        axes.set_title(panel["title"], fontsize=10, loc="left")
        series = [(target, result) for target in panel["targets"]
                  for result in query_range(prometheus, substitute(target["expr"], rate_s, range_s), start, end,
                                            step_s)]
        found[panel["title"]] = len(series)
        if panel["type"] == "stat":
            axes.axis("off")
            for i, (target, result) in enumerate(series):
                value = float(result["values"][-1][1])
                text = "—" if math.isnan(value) else f"{value:,.0f}"
                axes.text((i + 0.5) / len(series), 0.45, text, ha="center", fontsize=16, weight="bold")
                axes.text((i + 0.5) / len(series), 0.05, legend(target.get("legendFormat", ""), result["metric"]),
                          ha="center", fontsize=8)
        else:
            for target, result in series:
                times = [(t - start) / 60 for t, _ in result["values"]]
                values = [float(v) for _, v in result["values"]]
                axes.plot(times, values, label=legend(target.get("legendFormat", ""), result["metric"]) or None)
            axes.set_xlim(0, (end - start) / 60)
            axes.tick_params(labelsize=7)
            axes.set_xlabel("minutes", fontsize=7)
            if series and any(line.get_label()[:1] != "_" for line in axes.get_lines()):
                axes.legend(fontsize=7, loc="upper left")
        if not series:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="gray")
    figure.suptitle(f"{dashboard['title']} — {datetime.fromtimestamp(start):%Y-%m-%d %H:%M} + "
                    f"{(end - start) / 60:.0f} min", fontsize=14)
    figure.savefig(output, dpi=80)
    plt.close(figure)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--start", required=True, help="ISO time, e.g. 2026-12-03T05:00:00Z")
    parser.add_argument("--end", required=True, help="ISO time")
    parser.add_argument("--output", required=True, type=Path, help="PNG to write")
    parser.add_argument("--scrape-interval-s", type=int, default=5, help="Prometheus's scrape interval")
    args = parser.parse_args()
    found = draw(args.prometheus, timestamp(args.start), timestamp(args.end), args.output, args.scrape_interval_s)
    for title, count in found.items():
        print(f"{count:4d} series  {title}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
