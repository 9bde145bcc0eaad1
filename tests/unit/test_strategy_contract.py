"""One contract test over every registered strategy, and the registry's behaviour (incl. entry points)."""

import importlib.metadata
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

import strategies.registry as registry
from loop.selection import SELECTORS


@pytest.fixture
def candidates():
    rng = np.random.default_rng(0)
    n = 40
    return pl.DataFrame({
        "id": [f"pool-{i:03d}" for i in range(n)],
        "seed_id": [f"seed-{i // 4:03d}" for i in range(n)],
        "question": [f"question {i}" for i in range(n)],
        "solution": [f"step\n" * (1 + i % 5) + "#### 1" for i in range(n)],
        "answer": ["1"] * n,
        "premem": rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], n),
        "premem_base": rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], n),
        "loss": rng.random(n),
        "base_perplexity": 1 + rng.random(n),
        "base_accuracy": np.repeat(rng.choice([0.0, 0.2, 0.6, 1.0], n // 4), 4),
        "ifd": np.repeat(0.5 + rng.random(n // 4), 4),  # seed-level signals: one value per seed
        "reasoning_lines": np.repeat(rng.integers(1, 8, n // 4).astype(float), 4),
        "loss_by_epoch": [list(rng.random(3)) for _ in range(n)],  # a checkpoint-scope signal: one per checkpoint
    })


TEXT = ("id", "seed_id", "question", "solution", "answer")


def test_the_paper_strategies_are_registered():
    assert {"random", "loss", "perplexity", "premem"} <= set(registry.names())


@pytest.mark.parametrize("name", registry.names())
def test_contract(name, candidates):
    import loop.signals.registry as signals

    item = registry.resolve(name)
    assert item.name == name and item.description
    needs = item.needs_for({})
    assert set(needs) <= set(signals.columns())  # every column it reads has a provider
    assert item.selector in SELECTORS
    context = registry.StrategyContext(round=1, budget=8, selected_before=("pool-999",), n_seeds=10)
    scores = item(candidates, seed=0, context=context)
    assert scores.len() == candidates.height and scores.null_count() == 0
    assert np.isfinite(scores.cast(pl.Float64).to_numpy()).all()
    assert item(candidates, seed=0, context=context).equals(scores)  # deterministic for a given seed
    # Only the declared signals are read: dropping every other signal column changes nothing.
    slim = candidates.select(*TEXT, *needs)
    assert item(slim, seed=0, context=context).equals(scores)


def test_premem_marks_seeds_at_or_below_threshold(candidates):
    scores = registry.resolve("premem")(candidates, seed=0, threshold=0.4)
    assert scores.to_list() == [1.0 if p <= 0.4 else 0.0 for p in candidates["premem"]]


def test_loss_and_perplexity_rank_high_first(candidates):
    assert registry.resolve("loss")(candidates, seed=0).arg_max() == candidates["loss"].arg_max()
    assert registry.resolve("perplexity")(candidates, seed=0).arg_max() == candidates["base_perplexity"].arg_max()


def test_unknown_names_suggest_close_ones():
    with pytest.raises(KeyError, match="premem"):
        registry.resolve("premen")


def test_duplicates_fail_loudly_and_unknown_signals_when_prepared():
    import loop.signals.registry as signals

    item = registry.strategy("dup-test")(lambda c, *, seed: c["loss"])
    registry.register(item)
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.strategy("dup-test")(lambda c, *, seed: c["loss"]))
    with pytest.raises(ValueError, match="no signal provider writes column"):
        signals.providers_for({"gradient_norm"})


def test_a_strategy_taking_context_receives_it(candidates):
    seen = {}

    def adaptive(c, *, seed, context):
        seen["context"] = context
        return pl.Series([float(context.round)] * c.height)

    item = registry.strategy("adaptive-test")(adaptive)
    context = registry.StrategyContext(round=3, budget=5, selected_before=("a", "b"), n_seeds=10)
    assert item(candidates, seed=0, context=context).to_list() == [3.0] * candidates.height
    assert seen["context"].selected_before == ("a", "b")


def test_premem_include_base_reads_premem_base(candidates):
    item = registry.resolve("premem")
    assert item.needs_for({}) == ("premem",) and item.needs_for({"include_base": True}) == ("premem_base",)
    scores = item(candidates, seed=0, include_base=True, threshold=0.4)
    assert scores.to_list() == [1.0 if p <= 0.4 else 0.0 for p in candidates["premem_base"]]


def test_ifd_and_length_keep_seeds_at_their_cut(candidates):
    per_seed = candidates.group_by("seed_id").agg(pl.col("ifd", "reasoning_lines").first())
    median = float(np.percentile(per_seed["ifd"].to_numpy(), 50))
    scores = registry.resolve("ifd")(candidates, seed=0)
    assert scores.to_list() == [1.0 if v >= median else 0.0 for v in candidates["ifd"]]
    assert registry.resolve("ifd")(candidates, seed=0, percentile=0).to_list() == [1.0] * candidates.height
    top = registry.resolve("length")(candidates, seed=0, share=0.3)
    cut = float(np.percentile(per_seed["reasoning_lines"].to_numpy(), 70))
    assert top.to_list() == [1.0 if v >= cut else 0.0 for v in candidates["reasoning_lines"]]
    with pytest.raises(ValueError, match="share"):
        registry.resolve("length")(candidates, seed=0, share=0)


def test_early_loss_reads_the_first_checkpoint(candidates):
    scores = registry.resolve("early_loss")(candidates, seed=0)
    assert scores.to_list() == [v[0] for v in candidates["loss_by_epoch"].to_list()]
    last = registry.resolve("early_loss")(candidates, seed=0, checkpoint=-1)
    assert last.to_list() == [v[-1] for v in candidates["loss_by_epoch"].to_list()]


def test_difficulty_ranks_the_hardest_seeds_first(candidates):
    scores = registry.resolve("difficulty")(candidates, seed=0)
    assert scores.to_list() == [-v for v in candidates["base_accuracy"]]
    assert registry.resolve("difficulty").needs_for({"source": "level"}) == ()
    with_level = candidates.with_columns(level=pl.Series([f"Level {1 + i % 5}" for i in range(candidates.height)]))
    by_level = registry.resolve("difficulty")(with_level, seed=0, source="level")
    assert by_level.to_list() == [float(1 + i % 5) for i in range(candidates.height)]
    with pytest.raises(ValueError, match="needs a level column"):
        registry.resolve("difficulty")(candidates, seed=0, source="level")


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
    monkeypatch.setattr(registry.REGISTRY, "loaded", False)
    monkeypatch.setattr(registry.REGISTRY, "items", {})
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
