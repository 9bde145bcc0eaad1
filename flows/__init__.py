"""Prefect orchestration of the curation loop: the `curation-loop` flow, its CLI and deployments. Thin by design."""
