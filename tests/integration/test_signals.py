"""Signal providers on a tiny real model: one contract test over every registered provider, the paper's baselines
and premem with the base as checkpoint 0 in a smoke comparison, and a throwaway plug-in (a dist-info on sys.path)
adding a signal and a strategy reading it, run with no file of the tree edited."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

import loop.signals.registry as signals
from loop.config import build_config
from loop.run.engine import Engine
from loop.signals.compute import context as signal_context
from loop.store.layout import signal_path
from loop.model.loading import load_base
from loop.model.precision import resolve_precision

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def smoke(model_dir, out, *extra):
    return [f"model.name_or_path={model_dir}", f"out_dir={out}", "data.n_seeds=6", "data.n_test=6", "data.n_dev=4",
            "sampling.max_new_tokens=24", "torch_threads=1", "workers=1", "selection.budgets=[4]", *extra]


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("signals")
    engine = Engine(build_config("smoke", overrides=smoke(tiny_model_dir, out, "selection.strategies=[random]")))
    engine.prepare()
    return engine.context


@pytest.mark.parametrize("name", signals.names())
def test_contract(name, prepared):
    """Every provider returns its key and declared columns, one finite value per pool item or seed."""
    provider = signals.resolve(name)
    assert provider.description and provider.columns and provider.scope in signals.SCOPES
    assert provider.level in signals.LEVELS
    engine, seed = prepared, 0
    examples = engine.examples(seed)
    seeds = examples.filter(pl.col("split") == "seed")["id"]
    ledger = pl.DataFrame({"example_id": [s for s in seeds for _ in (1, 2)], "epoch": [1, 2] * seeds.len(),
                           "nll": [0.5, 0.01] * seeds.len(), "n_samples": 2, "n_correct": [1, 2] * seeds.len()})
    cfg = engine.cfg
    model = load_base(cfg.model, engine.device, resolve_precision(cfg.model, cfg.train, engine.device).weights)
    with engine.backend.bind(model, tag=f"contract-{name}") as bound:
        for required in provider.requires:  # what it reads from an earlier scope, stored first
            dep = signals.resolve(required)
            engine.store.write_parquet(signal_path(seed, required),
                                       dep(signal_context(engine, seed, examples, dep, bound=bound)))
        ctx = signal_context(engine, seed, examples, provider, bound=bound, ledger=ledger, tau=engine.tau(seed),
                                     epoch=1)
        frame = provider(ctx)  # the call checks key, columns, one row per row, finite values
        assert frame.columns == [provider.key, *provider.columns]
        assert frame.height == (examples.filter(pl.col("split") == ("pool" if provider.level == "item" else "seed"))
                                .height)
        again = provider(ctx)
    assert frame.sort(provider.key).equals(again.sort(provider.key))  # deterministic: seeded samples, exact scores


def test_premem_base_counts_the_base_as_an_unmemorized_checkpoint(prepared):
    engine, seed = prepared, 0
    examples = engine.examples(seed)
    seeds = examples.filter(pl.col("split") == "seed")["id"].to_list()
    # Memorized from the first checkpoint: the paper's premem is 0; the base solved 1 of 2 samples: premem_base 0.5
    ledger = pl.DataFrame({"example_id": seeds, "epoch": 1, "nll": 1e-4, "n_samples": 2, "n_correct": 2})
    base = pl.DataFrame({"seed_id": seeds, "base_accuracy": 0.5})
    engine.store.write_parquet(signal_path(seed, "base_accuracy"), base)
    provider = signals.resolve("premem_base")
    got = provider(signal_context(engine, seed, examples, provider, ledger=ledger, tau=engine.tau(seed)))
    assert got["premem_base"].to_list() == [0.5] * len(seeds)
    paper = signals.resolve("premem")
    assert paper(signal_context(engine, seed, examples, paper, ledger=ledger, tau=engine.tau(seed)))[
        "premem"].to_list() == [0.0] * len(seeds)


def test_the_paper_baselines_run_in_a_comparison(tiny_model_dir, tmp_path):
    strategies = ("[random, ifd, length, difficulty, premem, early_loss, "
                  "{name: premem, label: premem_base, params: {include_base: true}}]")
    cfg = build_config("smoke", overrides=smoke(tiny_model_dir, tmp_path, f"selection.strategies={strategies}",
                                                "seeds=[0, 1]"))  # two replicates, each its own draw of the data
    Engine(cfg).run_all(progress=False)
    for seed in (0, 1):
        done = {p.parts[-3] for p in tmp_path.glob(f"steps/seed-{seed}/*/round-1/step.json")}
        assert done == {"random", "ifd", "length", "difficulty", "premem", "premem_base", "early_loss"}
        stored = {p.stem for p in tmp_path.glob(f"signals/seed-{seed}/*.parquet")}
        assert stored == {"ifd", "reasoning_lines", "base_accuracy"}
    signals_r0 = pl.read_parquet(tmp_path / "steps/seed-0/shared/round-0/signals.parquet")
    assert {"premem", "premem_base", "loss_by_epoch"} <= set(signals_r0.columns)
    assert set(signals_r0["loss_by_epoch"].list.len().to_list()) == {2}  # one NLL per epoch checkpoint (2 epochs)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("signals/seed-0/*.parquet")}
    Engine(cfg).run_all(progress=False)  # resumed: no stored signal is recomputed
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("signals/seed-0/*.parquet")} == before


PLUGIN = '''
"""A plug-in living outside curation-loop: a signal and a strategy that reads it."""
import polars as pl

from loop.signals.registry import signal
from strategies.registry import strategy


@signal("question_chars", scope="static", level="item")
def question_chars(ctx):
    """Characters in each pool item's question."""
    return ctx.rows.select("id", question_chars=pl.col("question").str.len_chars().cast(pl.Float64))


@strategy("longest-question", needs=("question_chars",))
def longest_question(candidates, *, seed, context):
    """Pool items with the longest questions first."""
    assert context.budget > 0
    return candidates["question_chars"].alias("score")
'''


def test_a_plugin_adds_a_signal_and_a_strategy(tiny_model_dir, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "qlen_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "qlen_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qlen-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[curation_loop.signals]\nquestion_chars = qlen_plugin:question_chars\n\n"
        "[curation_loop.strategies]\nlongest-question = qlen_plugin:longest_question\n")
    out = tmp_path / "run"
    code = textwrap.dedent(f"""
        import sys
        from loop.config import build_config
        from loop.run.engine import Engine
        Engine(build_config("smoke", overrides=sys.argv[1:])).run_all(progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code, *smoke(tiny_model_dir, out,
                             "selection.strategies=[random, longest-question]")],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lengths = pl.read_parquet(out / "signals/seed-0/question_chars.parquet")
    selected = pl.read_parquet(out / "steps/seed-0/longest-question/round-1/selected.parquet")["id"].to_list()
    longest = lengths.sort("question_chars", descending=True)["question_chars"][len(selected) - 1]
    assert lengths.filter(pl.col("id").is_in(selected))["question_chars"].min() >= longest
    record = json.loads((out / "steps/seed-0/longest-question/round-1/step.json").read_text())
    assert record["n_selected"] == 4 and not math.isnan(record["accuracy"])
