"""What a resume may change: more replicates (every stored seed kept, nothing else changed), and per-replicate data
hashes checked only for the replicates the first start had."""

from loop.store.manifest import added_replicates, resume_changes

STORED = {"seeds": [0, 1], "train": {"epochs": 2}, "name": "x"}


def test_only_a_grown_seed_list_adds_replicates():
    assert added_replicates(STORED, {**STORED, "seeds": [0, 1, 2, 5]}) == [2, 5]
    assert added_replicates(STORED, {**STORED, "seeds": [5, 1, 0]}) == [5]  # order is not a change of run
    assert added_replicates(STORED, dict(STORED)) == []
    assert added_replicates(STORED, {**STORED, "seeds": [0, 2]}) is None  # seed 1 dropped
    assert added_replicates(STORED, {**STORED, "seeds": [0, 1, 2], "train": {"epochs": 3}}) is None
    assert added_replicates(STORED, {**STORED, "seeds": [0, 1, 2], "extra": 1}) is None
    assert added_replicates({"train": {}}, {"train": {}, "seeds": [0]}) is None  # no stored seed list


def test_a_resume_checks_the_data_of_the_replicates_it_had_and_not_of_added_ones():
    first = {"versions": {"torch": "1"}, "examples": {"0": {"sha256": "a"}, "1": {"sha256": "b"}}}
    added = {"versions": {"torch": "1"}, "examples": {"0": {"sha256": "a"}, "1": {"sha256": "b"}, "2": {"sha256": "c"}}}
    assert resume_changes(first, added) == []
    changed = {"versions": {"torch": "1"},
               "examples": {"0": {"sha256": "a"}, "1": {"sha256": "X"}, "2": {"sha256": "c"}}}
    assert resume_changes(first, changed) == ["examples.1.sha256: 'b' -> 'X'"]
    assert resume_changes(first, {"versions": {"torch": "2"}, "examples": first["examples"]}) == [
        "versions.torch: '1' -> '2'"]
    # A replicate the first start had and this one lacks is a change, not an added one.
    assert resume_changes(first, {"versions": {"torch": "1"}, "examples": {"0": {"sha256": "a"}}}) == [
        "examples.1: {'sha256': 'b'} -> None"]
