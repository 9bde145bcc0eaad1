"""curation-loop's engine: data, formatting, grading, models, training, sampling, dynamics, selection, store.

Usable without any orchestrator (`loop.run.engine.Engine`); the Prefect flow in `flows/` only calls into it.
"""
