"""Publish a written report's artifacts (reports.digest says what they hold) beside the flow run in the Prefect UI."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def publish_artifacts(index: str | Path) -> None:
    """Every artifact of the report whose index.html is at `index`: tables as table artifacts, texts as markdown."""
    # Imported here, as the flows import the report writers: importing the flows must not load reports'
    # plotting stack (matplotlib) in every worker process that only runs steps.
    from reports.digest import artifacts

    for artifact in artifacts(index):
        if artifact.table is not None:
            create_table_artifact(artifact.table, key=artifact.key, description=artifact.description)
        else:
            create_markdown_artifact(artifact.markdown, key=artifact.key, description=artifact.description)
