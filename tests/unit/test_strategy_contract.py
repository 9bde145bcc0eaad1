"""One contract test over every registered strategy, and the registry's behaviour (incl. entry points)."""

import importlib.metadata
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

import strategies.registry as registry


@pytest.fixture
def candidates():
    rng = np.random.default_rng(0)
    n = 40
    return pl.DataFrame({
        "id": [f"pool-{i:03d}" for i in range(n)],
        "seed_id": [f"seed-{i // 4:03d}" for i in range(n)],
        "premem": rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], n),
        "loss": rng.random(n),
        "base_perplexity": 1 + rng.random(n),
    })


def test_the_paper_strategies_are_registered():
    assert {"random", "loss", "perplexity", "premem"} <= set(registry.names())


@pytest.mark.parametrize("name", registry.names())
def test_contract(name, candidates):
    item = registry.resolve(name)
    assert item.name == name and item.description
    assert set(item.needs) <= set(registry.KNOWN_SIGNALS)
    assert item.selector in registry.SELECTORS
    scores = item(candidates, seed=0)
    assert scores.len() == candidates.height and scores.null_count() == 0
    assert np.isfinite(scores.cast(pl.Float64).to_numpy()).all()
    assert item(candidates, seed=0).equals(scores)  # deterministic for a given seed
    # Only the declared signals are read: dropping every other signal column changes nothing.
    slim = candidates.select("id", "seed_id", *item.needs)
    assert item(slim, seed=0).equals(scores)


def test_premem_marks_seeds_at_or_below_threshold(candidates):
    scores = registry.resolve("premem")(candidates, seed=0, threshold=0.4)
    assert scores.to_list() == [1.0 if p <= 0.4 else 0.0 for p in candidates["premem"]]


def test_loss_and_perplexity_rank_high_first(candidates):
    assert registry.resolve("loss")(candidates, seed=0).arg_max() == candidates["loss"].arg_max()
    assert registry.resolve("perplexity")(candidates, seed=0).arg_max() == candidates["base_perplexity"].arg_max()


def test_unknown_names_suggest_close_ones():
    with pytest.raises(KeyError, match="premem"):
        registry.resolve("premen")


def test_duplicates_and_unknown_signals_fail_loudly():
    item = registry.strategy("dup-test")(lambda c, *, seed: c["loss"])
    registry.register(item)
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.strategy("dup-test")(lambda c, *, seed: c["loss"]))
    with pytest.raises(ValueError, match="unknown signals"):
        registry.strategy("x", needs=("gradient_norm",))


def test_a_third_party_strategy_arrives_by_entry_point(tmp_path, monkeypatch, candidates):
    """A package that is only installed (an entry point), with no edit to this project, is found."""
    (tmp_path / "shortest_first.py").write_text(textwrap.dedent('''
        """A plug-in strategy living outside curation-loop."""
        import polars as pl
        from strategies.registry import strategy

        @strategy("shortest-first", needs=("loss",))
        def shortest_first(candidates, *, seed):
            """Lowest loss first."""
            return (-candidates["loss"]).alias("score")
    '''))
    dist = tmp_path / "shortest_first-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shortest-first\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[curation_loop.strategies]\nshortest-first = shortest_first:shortest_first\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    assert "shortest-first" in registry.names()
    scores = registry.resolve("shortest-first")(candidates, seed=0)
    assert scores.arg_max() == candidates["loss"].arg_min()
    sys.modules.pop("shortest_first", None)


def test_random_per_seed_takes_equal_copies_of_every_seed(candidates):
    from loop.selection import select_top_k

    scores = registry.resolve("random_per_seed")(candidates, seed=3)
    batch = set(select_top_k(candidates, scores, 20, salt="0:1"))  # 10 seeds x 4 items: 2 of every seed
    per_seed = candidates.filter(pl.col("id").is_in(batch)).group_by("seed_id").len()["len"]
    assert per_seed.len() == 10 and set(per_seed.to_list()) == {2}
    odd = set(select_top_k(candidates, scores, 13, salt="0:1"))  # 1 of every seed, a second of 3 of them
    assert sorted(candidates.filter(pl.col("id").is_in(odd)).group_by("seed_id").len()["len"].to_list()) == [1] * 7 + [2] * 3
