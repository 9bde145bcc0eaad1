"""reports.sections and reports.page: a report is a list of sections, and a new figure is one builder."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from reports import Figure, Table, Text, assemble, write_page


def test_builders_compose_a_page_and_its_folder(tmp_path: Path):
    (tmp_path / "old.png").write_bytes(b"stale")  # drawn by an earlier report, not by this one
    summary = {"title": "a <b> report", "value": 1.5}

    def figure(s):  # a new figure: one function of the report's inputs
        return Figure("new.png", b"\x89PNG fake", alt="a 'quoted' figure", heading="New figure")

    builders = (lambda s: Text(f"<p>value {s['value']}</p>"), lambda s: None, figure,
                lambda s: [Table(["k", "v"], [["<x>", 1]], heading="Table", intro="<p>why</p>"), Text("", heading="End")])
    sections = assemble(builders, summary)
    assert [type(s) for s in sections] == [Text, Figure, Table, Text]
    index = write_page(tmp_path, summary, sections, figure_names=("old.png", "new.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "new.png", "summary.json"]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    text = index.read_text()
    assert "<title>a &lt;b&gt; report</title>" in text and "<p>value 1.5</p>" in text
    assert "<h2>Table</h2><p>why</p><table>" in text and "<td>&lt;x&gt;</td><td>1</td>" in text
    png = text.split("base64,")[1].split("'")[0]
    assert base64.b64decode(png) == (tmp_path / "new.png").read_bytes() == b"\x89PNG fake"
    assert "<h2>New figure</h2><img alt='a &#x27;quoted&#x27; figure'" in text
    assert text.index("New figure") < text.index("<h2>Table</h2>") < text.index("<h2>End</h2>")
