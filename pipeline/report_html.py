"""The analysis report as one self-contained HTML page: the sections of `pipeline.report` in order, each table as it
is in `report.json` (numbers right-aligned, thousands separated, an empty value as an em dash) and each figure
embedded as a base64 PNG with its caption. No scripts and no external files, so it opens anywhere, offline.
Must never import Ray or vLLM.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from pipeline.report import Section

MISSING = "—"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1180px;
       padding: 0 1.5rem; color: #1d2127; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.3rem; margin-top: 2.6rem; border-bottom: 2px solid #d6dbe1; padding-bottom: 0.25rem; }
p.intro { max-width: 60rem; color: #3a4149; }
.meta { color: #58606a; font-size: 0.92rem; }
nav ol { columns: 2; max-width: 36rem; padding-left: 1.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1.6rem; font-size: 0.88rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.35rem; white-space: nowrap; }
th, td { padding: 0.28rem 0.7rem; border-bottom: 1px solid #e3e7eb; }
th { background: #f2f4f7; text-align: left; vertical-align: bottom; font-weight: 600; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #fafbfc; }
tr.first td { border-top: 2px solid #c9cfd6; }
figure { margin: 0.8rem 0 2rem; }
figure img { max-width: 100%; border: 1px solid #e3e7eb; }
figcaption { font-size: 0.88rem; color: #3a4149; max-width: 60rem; margin-top: 0.3rem; }
code { background: #f2f4f7; padding: 0 0.2rem; white-space: nowrap; }
"""


def format_cell(value: Any, decimals: int = 0) -> str:
    """How a value of report.json shows on the page: floats with the `decimals` of their column, so that a column's
    numbers line up (2.50 above 1.83), never rounded further than the JSON holds them."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{decimals}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _decimals(values: list[Any]) -> int:
    floats = [v for v in values if isinstance(v, float)]
    return max((len(repr(v).partition(".")[2]) for v in floats if "e" not in repr(v)), default=0)


def render_html(title: str, runs: list[dict[str, Any]], sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        ('<p class="meta">Runs: ' + "; ".join(
            f"<code>{html.escape(r['path'])}</code> (teachers {html.escape(', '.join(r['teachers']))})" for r in runs
        ) + "</p>") if runs else "",
        "<nav><ol>" + "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
        + "</ol></nav>",
    ]
    for section in sections:
        parts.append(f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>')
        parts.append(f'<p class="intro">{_inline(section.intro)}</p>')
        parts.extend(_table(t) for t in section.tables)
        for figure in section.figures:
            data = base64.b64encode(figure.png).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.caption)}">'
                f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _table(table: dict[str, Any]) -> str:
    rows = table["rows"]
    numeric = [
        any(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows)
        for i in range(len(table["columns"]))
    ]
    decimals = [_decimals([r[i] for r in rows]) for i in range(len(table["columns"]))]
    head = "".join(
        f'<th{" class=num" if numeric[i] else ""}>{html.escape(c)}</th>' for i, c in enumerate(table["columns"])
    )
    body = []
    previous = None
    for row in rows:
        classes = []
        if "category" in table["columns"] and row[table["columns"].index("category")] == "all":
            classes.append("total")
        if previous is not None and row[0] != previous:  # a new teacher starts a new block
            classes.append("first")
        previous = row[0]
        cells = "".join(
            f'<td{" class=num" if numeric[i] else ""}>{html.escape(format_cell(v, decimals[i]))}</td>'
            for i, v in enumerate(row)
        )
        body.append(f'<tr class="{" ".join(classes)}">{cells}</tr>' if classes else f"<tr>{cells}</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(table["columns"])}">nothing yet</td></tr>')
    return (
        f'<table id="{table["id"]}"><caption>{html.escape(table["caption"])}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
