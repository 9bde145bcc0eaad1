"""The lookahead's finished probes, kept in the run store as each one ends, so that a step killed mid-lookahead
reruns only the probes it had not finished.

Why. A probe is a fine-tune of the round's length (`loop.control.probe`): at 8B, minutes each, and a decision runs
one per arm and repeat. Everything else of a step is kept only when the step commits; without this, a kill in the
last probe would throw the others away.

A probe is named by what determines its result: the ids it trains on, the items it scores, its epochs, metric,
training seed and (for `accuracy`) samples per item, hashed (BLAKE2b) into `key`. The same config gives the same
key on a rerun, and a resumed run's config is the stored one (`loop.store.run_store`), so a kept probe is the one
the rerun would train. On a CPU the rerun would reproduce it bit for bit; on a GPU within kernel nondeterminism.
A kept file whose items differ from those asked for is not used. A resume that `allow_resume_changes` lets run under
other library versions or weights reads kept probes back as it reads finished steps back: made under the old ones.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl

from loop.store import layout


def probe_key(train_ids: list[str], eval_ids: list[str], *, epochs: int, metric: str, seed: int,
              n_samples: int | None) -> str:
    """The name of a probe: a hash of everything its result depends on within one run."""
    payload = json.dumps({"train": sorted(train_ids), "eval": list(eval_ids), "epochs": epochs, "metric": metric,
                          "seed": seed, "n_samples": n_samples if metric == "accuracy" else None})
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def load(store, step, key: str, eval_ids: list[str]) -> np.ndarray | None:
    """The kept probe's per-item measurements in `eval_ids` order, or None where none is kept (or it scored other
    items)."""
    frame = store.read_parquet(layout.probe_path(step.seed, step.strategy, step.round, key))
    if frame is None or frame["id"].to_list() != list(eval_ids):
        return None
    return frame["value"].to_numpy().astype(float)


def keep(store, step, key: str, eval_ids: list[str], values: np.ndarray) -> None:
    """Keep a finished probe's per-item measurements (atomically, and pushed where the store has a location)."""
    frame = pl.DataFrame({"id": list(eval_ids), "value": np.asarray(values, dtype=float)},
                         schema={"id": pl.String, "value": pl.Float64})
    store.write_parquet(layout.probe_path(step.seed, step.strategy, step.round, key), frame)
