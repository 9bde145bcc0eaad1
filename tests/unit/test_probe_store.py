"""The lookahead's kept probes (`loop.control.probe_store`): named by what determines them, read back only for the
items asked for."""

from types import SimpleNamespace

import numpy as np

from loop.control.probe_store import keep, load, probe_key
from loop.store.run_store import RunStore

BASE = dict(epochs=2, metric="loss", seed=7, n_samples=4)


def test_a_probe_is_named_by_everything_its_result_depends_on():
    key = probe_key(["b", "a"], ["d0", "d1"], **BASE)
    assert key == probe_key(["a", "b"], ["d0", "d1"], **BASE)  # the training set's order does not matter
    changed = [probe_key(["a", "c"], ["d0", "d1"], **BASE), probe_key(["a", "b"], ["d1", "d0"], **BASE),
               probe_key(["a", "b"], ["d0", "d1"], **{**BASE, "epochs": 3}),
               probe_key(["a", "b"], ["d0", "d1"], **{**BASE, "metric": "accuracy"}),
               probe_key(["a", "b"], ["d0", "d1"], **{**BASE, "seed": 8})]
    assert len({key, *changed}) == 6
    # samples per item matter to sampled accuracy only
    assert probe_key(["a"], ["d0"], **{**BASE, "n_samples": 9}) == probe_key(["a"], ["d0"], **BASE)
    accuracy = {**BASE, "metric": "accuracy"}
    assert probe_key(["a"], ["d0"], **{**accuracy, "n_samples": 9}) != probe_key(["a"], ["d0"], **accuracy)


def test_a_kept_probe_reads_back_for_its_items_only(tmp_path):
    store, step = RunStore(tmp_path), SimpleNamespace(seed=3, strategy="auto", round=2)
    key = probe_key(["a"], ["d0", "d1", "p4"], **BASE)
    assert load(store, step, key, ["d0", "d1", "p4"]) is None
    keep(store, step, key, ["d0", "d1", "p4"], np.array([0.25, 1.5, 0.125]))
    assert (tmp_path / f"probes/seed-3/auto/round-2/{key}.parquet").exists()
    assert load(store, step, key, ["d0", "d1", "p4"]).tolist() == [0.25, 1.5, 0.125]
    assert load(store, step, key, ["d0", "d1"]) is None  # other items: not this probe's result
    assert load(store, SimpleNamespace(seed=3, strategy="auto", round=1), key, ["d0", "d1", "p4"]) is None
