"""One report page: sections rendered to a self-contained index.html, and the folder written beside it.

Shared by the run report and the analysis report, which differ only in their summary and their sections
(reports.sections). Each section renders as one block: its heading, its introduction, then its body.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from loop.store.layout import SUMMARY
from reports.files import atomic_write_bytes, atomic_write_text
from reports.sections import Figure, Section, Table, Text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.warn{color:#a40}code{background:#f6f6f6;padding:0 .2em}
"""


def escape(value) -> str:
    """`value` as text safe inside HTML (quotes too, so it may stand in an attribute)."""
    return html.escape(str(value))


def num(value, digits: int = 3) -> str:
    """A number with `digits` decimals; "–" for a missing one."""
    return "–" if value is None else f"{value:.{digits}f}"


def list_html(items: Iterable) -> str:
    """A bulleted list; every item escaped."""
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def table_html(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """An HTML table; every header and cell escaped."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section_html(section: Section) -> str:
    """One section as one block of the page: heading, introduction, then the text, table or embedded image."""
    heading = f"<h2>{section.heading}</h2>" if section.heading else ""
    if isinstance(section, Text):
        return heading + section.html
    if isinstance(section, Table):
        return heading + section.intro + table_html(section.columns, section.rows)
    if isinstance(section, Figure):
        png64 = base64.b64encode(section.png).decode("ascii")
        return heading + section.intro + f"<img alt='{escape(section.alt)}' src='data:image/png;base64,{png64}'>"
    raise TypeError(f"not a report section: {section!r}")


def render_page(title: str, sections: Iterable[Section]) -> str:
    """The index.html text: the title, then every section in order."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"]
    parts += [section_html(s) for s in sections]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_page(out: Path, summary: dict, sections: Sequence[Section], *, figure_names: Iterable[str] = ()) -> Path:
    """Write the figures, summary.json and index.html to `out` (each atomically); return index.html's path.

    index.html is written last, so its presence means the report is complete. `figure_names` are the PNGs this
    kind of report may draw: one not drawn this time is removed, so it cannot outlive an earlier report.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = [s for s in sections if isinstance(s, Figure)]
    for name in set(figure_names) - {f.name for f in figures}:
        (out / name).unlink(missing_ok=True)
    for figure in figures:
        atomic_write_bytes(out / figure.name, figure.png)
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return atomic_write_text(out / "index.html", render_page(summary["title"], sections))
