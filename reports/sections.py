"""What a report is made of: a list of sections, each a figure, a table or a text.

A report module (reports/run_sections.py, reports/analysis_sections.py) lists its section builders in the order
the page shows them; a builder reads the report's inputs and returns a section, a list of sections, or None where
it has nothing to show. Adding a figure is one builder that draws a PNG and returns a `Figure`. Rendering and
writing are reports.page's job, so no builder touches a file.

`heading`, `intro` and `html` are HTML fragments written by report code: escape anything read from data with
`reports.page.escape`. Table cells and a figure's alt text are plain values, escaped when rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Text:
    """Prose or a list: `html` under an optional heading."""

    html: str
    heading: str | None = None


@dataclass(frozen=True)
class Table:
    """A table of `rows` (lists of cells) under `columns`, after an optional heading and introduction."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    heading: str | None = None
    intro: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG, written to the report folder as `name` and embedded in index.html (so the page can travel alone)."""

    name: str
    png: bytes
    alt: str
    heading: str | None = None
    intro: str = ""


Section = Text | Table | Figure
Built = Section | Sequence[Section] | None  # what a builder returns


def assemble(builders: Iterable[Callable[[Any], Built]], inputs: Any) -> list[Section]:
    """Every builder's sections for `inputs`, in the builders' order (None: nothing to show)."""
    sections: list[Section] = []
    for build in builders:
        built = build(inputs)
        if built is None:
            continue
        sections.extend([built] if isinstance(built, (Text, Table, Figure)) else built)
    return sections
