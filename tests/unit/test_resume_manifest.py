"""What a resume may change: more replicates (every stored seed kept) and more strategies (every stored entry kept
as it was), nothing else; and per-replicate data hashes checked only for the replicates the first start had."""

from loop.store.manifest import Additions, additions, resume_changes

STORED = {"seeds": [0, 1], "train": {"epochs": 2}, "name": "x", "selection": {"strategies": ["random"]}}


def added_replicates(stored, wanted):
    found = additions(stored, wanted)
    return None if found is None else found.seeds


def test_only_a_grown_seed_list_adds_replicates():
    assert added_replicates(STORED, {**STORED, "seeds": [0, 1, 2, 5]}) == [2, 5]
    assert added_replicates(STORED, {**STORED, "seeds": [5, 1, 0]}) == [5]  # order is not a change of run
    assert added_replicates(STORED, dict(STORED)) == []
    assert added_replicates(STORED, {**STORED, "seeds": [0, 2]}) is None  # seed 1 dropped
    assert added_replicates(STORED, {**STORED, "seeds": [0, 1, 2], "train": {"epochs": 3}}) is None
    assert added_replicates(STORED, {**STORED, "seeds": [0, 1, 2], "extra": 1}) is None
    assert added_replicates({"train": {}}, {"train": {}, "seeds": [0]}) is None  # no stored seed list


RANDOM = {"name": "random", "params": {}, "label": None}
LOSS = {"name": "loss", "params": {}, "label": None}
AUTO = {"name": "auto", "params": {"arms": ["loss"]}, "label": "auto_h"}
WITH = {**STORED, "selection": {"strategies": [RANDOM, LOSS], "budgets": [4]}}


def grown(strategies, **changes):
    return {**WITH, **changes, "selection": {**WITH["selection"], "strategies": strategies}}


def test_only_a_grown_strategy_list_adds_competitors_named_by_their_labels():
    assert additions(WITH, grown([RANDOM, LOSS, AUTO])) == Additions(strategies=["auto_h"])
    assert additions(WITH, grown([AUTO, LOSS, RANDOM, "perplexity"])) == Additions(strategies=["auto_h", "perplexity"])
    assert additions(WITH, grown([RANDOM, LOSS, AUTO], seeds=[0, 1, 2])) == Additions(seeds=[2], strategies=["auto_h"])
    assert additions(WITH, grown([LOSS, RANDOM])) == Additions()  # reordered: nothing added, and falsy
    assert not Additions()
    assert additions(WITH, grown([RANDOM, AUTO])) is None  # loss dropped
    assert additions(WITH, grown([RANDOM, {**LOSS, "params": {"x": 1}}, AUTO])) is None  # loss changed
    assert additions(WITH, {**grown([RANDOM, LOSS, AUTO]), "selection": {  # another change beside the growth
        "strategies": [RANDOM, LOSS, AUTO], "budgets": [8]}}) is None
    assert additions({**WITH, "selection": {}}, grown([RANDOM, LOSS])) is None  # no stored strategy list


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


def test_a_resume_checks_each_stored_autos_params_as_the_code_runs_them():
    from loop.control.controller import AutoParams

    ran = AutoParams.parse({"arms": ["loss"]}).as_run()
    # Defaults are written out, a meaningful null as its meaning: a code whose null means otherwise differs.
    assert ran["arms"] == ["random", "loss"] and ran["lookahead_epochs"] == "null: the round's own epochs"
    assert ran["lookahead_repeats"] == 1 and "plateau_rounds" in ran
    assert AutoParams.parse({"arms": ["loss"], "lookahead_holdout": 0}).as_run()["lookahead_holdout"] == 0
    first = {"versions": {"torch": "1"}, "strategy_params": {"auto": ran}}
    assert resume_changes(first, {"versions": {"torch": "1"}, "strategy_params": {"auto": dict(ran)}}) == []
    # An auto added by this resume has nothing to compare with.
    grown = {"versions": {"torch": "1"}, "strategy_params": {"auto": ran, "auto_b": {"lookahead": False}}}
    assert resume_changes(first, grown) == []
    # Code whose default changed since the start: the resume is told which param of which strategy.
    changed = {**ran, "lookahead_holdout": "null: off"}
    assert resume_changes(first, {"versions": {"torch": "1"}, "strategy_params": {"auto": changed}}) == [
        f"strategy_params.auto.lookahead_holdout: {ran['lookahead_holdout']!r} -> 'null: off'"]
    # A store started before the params were recorded is compared on the rest only.
    assert resume_changes({"versions": {"torch": "1"}}, grown) == []


def test_the_first_starts_record_keeps_its_entries_and_gains_the_added_ones():
    from loop.store.manifest import merge_added

    first = {"examples": {"0": "a"}, "strategy_params": {"auto": {"x": 1}}}
    merge_added(first, {"examples": {"0": "CHANGED", "1": "b"}, "strategy_params": {"auto": {"x": 2}, "new": {}}})
    assert first == {"examples": {"0": "a", "1": "b"}, "strategy_params": {"auto": {"x": 1}, "new": {}}}
    old = {"examples": {"0": "a"}}  # recorded before strategy params were: nothing to merge them into
    merge_added(old, {"strategy_params": {"auto": {}}})
    assert old == {"examples": {"0": "a"}}


def test_a_field_added_since_the_store_started_is_no_difference_at_its_default():
    from loop.store.manifest import config_differences, with_added_fields

    stored = {"name": "x", "train": {"epochs": 2}}
    defaults = {"name": "embedded-default", "train": {"epochs": 3, "cuda_graphs": False, "length_bucket": None},
                "analysis": {"tau": 0.5}}
    at_default = {"name": "x", "train": {"epochs": 2, "cuda_graphs": False, "length_bucket": None},
                  "analysis": {"tau": 0.5}}
    filled = with_added_fields(stored, at_default, defaults)
    assert config_differences(filled, at_default) == []
    assert stored == {"name": "x", "train": {"epochs": 2}}  # the stored record itself is left as it was
    # A new field set off its default would run something else; a stored field is never filled, even at its default.
    graphs = {**at_default, "train": {**at_default["train"], "cuda_graphs": True}}
    assert config_differences(with_added_fields(stored, graphs, defaults), graphs) == \
        ["train.cuda_graphs: None -> True"]
    epochs = {**at_default, "train": {**at_default["train"], "epochs": 3}}
    assert config_differences(with_added_fields(stored, epochs, defaults), epochs) == ["train.epochs: 2 -> 3"]
    # A key the config's defaults do not know (a typo in a hand-edited store) is no field added since.
    odd = {**at_default, "extra": 1}
    assert config_differences(with_added_fields(stored, odd, defaults), odd) == ["extra: None -> 1"]
