"""The reference guard's comparison: to the last bit where the reference's machine is this one; elsewhere floats
within float32 rounding (tables and the step records' JSON alike) and everything else exactly. Hand-made tables."""

import json

import polars as pl

from tests.reference.tables import REL_TOL, differences


def tables(nll: float, ids=("a", "b"), accuracy: float = 0.5, kept: int = 3) -> dict[str, pl.DataFrame]:
    record = {"accuracy": accuracy, "n_selected": kept, "checksums": {"ledger.parquet": str(nll)}}
    return {"ledger": pl.DataFrame({"id": list(ids), "nll": [nll, 2 * nll]}),
            "step_records": pl.DataFrame({"_seed": [0], "_strategy": ["loss"], "_round": [1],
                                          "record": [json.dumps(record, sort_keys=True)]})}


def test_rounding_apart_passes_only_where_not_bitwise():
    near = 1.0 + REL_TOL / 10
    assert differences(tables(1.0), tables(1.0)) == []
    assert differences(tables(1.0), tables(near, accuracy=0.5 * near), exact=False) == []
    assert {d.split(":")[0] for d in differences(tables(1.0), tables(near, accuracy=0.5 * near))} == \
        {"ledger", "step_records"}


def test_beyond_rounding_or_any_non_float_change_is_a_difference():
    far = 1.0 + REL_TOL * 10
    assert [d.split(":")[0] for d in differences(tables(1.0), tables(far), exact=False)] == ["ledger"]
    found = differences(tables(1.0), tables(1.0, accuracy=0.5 * far), exact=False)
    assert found == [f"step_records: seed 0 loss round 1: /accuracy: 0.5 against {0.5 * far!r}"]
    assert differences(tables(1.0), tables(1.0, ids=("a", "c")), exact=False)[0].startswith("ledger")
    assert differences(tables(1.0), tables(1.0, kept=4), exact=False) == \
        ["step_records: seed 0 loss round 1: /n_selected: 3 against 4"]
