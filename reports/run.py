"""Report of one run folder: read the run store's tables and write DIR/report/.

Besides the curves, the notes state what the learning dynamics looked like (memorization threshold and
phrasing floor, memorized fraction, pre-memorization accuracy against train accuracy, how selective the
premem threshold was), so a reader can judge whether the comparison was informative.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import yaml

from loop.control.controller import AUTO, AutoParams
from loop.control.lookahead import recorded_cost
from loop.schema import SHARED_STRATEGY
from loop.store import RunStore, layout
from reports.render import write_report


def _examples(root: Path) -> pl.DataFrame | None:
    """Every replicate's examples, with a `replicate` column (the seed whose draw they are)."""
    files = sorted(root.glob(layout.EXAMPLE_FILES))
    if not files:
        return None
    return pl.concat([pl.read_parquet(f).with_columns(replicate=pl.lit(layout.replicate_seed(f)))
                      for f in files], how="diagonal_relaxed")


def _step_records(root: Path) -> list[dict]:
    """Every finished step's step.json, in path order (read once per report)."""
    return [json.loads(p.read_text()) for p in sorted(root.glob(layout.step_records()))]


def _step_frame(records: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()


def _calibrated(records: list[dict]) -> dict[int, dict]:
    """Replicate -> the threshold its round 0 calibrated on dev (step.json `tau_calibration`), where it did."""
    return {int(r["seed"]): r["tau_calibration"] for r in records
            if r["strategy"] == SHARED_STRATEGY and r["round"] == 0 and r.get("tau_calibration")}


def threshold_note(records: list[dict], config: dict, examples: pl.DataFrame | None) -> str:
    """The memorization rule the run used, in the config's own terms: a fixed tau or floor_scale, or the value each
    replicate's round 0 calibrated on dev (`auto`), listed per replicate."""
    dyn = config.get("dynamics", {})
    style = dyn.get("tau_mode") == "style_floor"
    name = "floor_scale" if style else "tau"
    setting = dyn.get(name)
    if setting == "auto":
        found = _calibrated(records)
        values = ", ".join(f"seed {s}: {c['value']:.4g}" for s, c in sorted(found.items())) or "none finished yet"
        rule = ("target NLL < floor_scale x the example's phrasing floor" if style else
                "log(log PPL) < tau (mean target NLL < e^tau)")
        note = f"Memorized iff {rule}, {name} calibrated on the dev split per replicate ({values})."
    elif style:
        note = (f"Memorized iff target NLL < {setting} x the example's phrasing floor "
                f"(per-example tau = log({setting} x floor)).")
    else:
        note = f"Memorized iff log(log PPL) < tau = {setting} (mean target NLL < {math.exp(float(setting)):.4f})."
    if style and examples is not None and "style_floor" in examples.columns:
        floor = examples.filter(pl.col("split") == "seed")["style_floor"]
        note += (f" Seed floors: mean {floor.mean():.3f}, range {floor.min():.3f}-{floor.max():.3f} nats/token.")
    return note


def dynamics_notes(records: list[dict], config: dict, examples: pl.DataFrame | None) -> list[str]:
    """Plain-language facts about memorization and selection, read from step.json records and the data."""
    notes = [threshold_note(records, config, examples)]
    steps = _step_frame(records)
    if steps.height and "memorized_last_epoch" in steps.columns:
        r0 = steps.filter(pl.col("round") == 0)
        if r0.height:
            parts = [f"memorized at the last epoch {r0['memorized_last_epoch'].mean():.2f}"]
            if "train_accuracy_last_epoch" in r0.columns and r0["train_accuracy_last_epoch"].null_count() < r0.height:
                parts.append(f"train accuracy {r0['train_accuracy_last_epoch'].mean():.3f}")
            if "premem_mean" in r0.columns and r0["premem_mean"].null_count() < r0.height:
                parts.append(f"pre-memorization accuracy {r0['premem_mean'].mean():.3f}")
            parts.append(f"test accuracy {r0['accuracy'].mean():.3f}")
            notes.append("Round 0 (seed set only), mean over seeds: " + ", ".join(parts) + ".")
    if steps.height and "score_mean_all" in steps.columns:
        pm = steps.filter(pl.col("strategy") == "premem")
        if pm.height:
            frac = ", ".join(f"round {r}: {v:.2f}" for r, v in
                             pm.group_by("round").agg(pl.col("score_mean_all").mean()).sort("round").iter_rows())
            notes.append(f"premem: share of unused pool items whose seed was eligible (premem <= threshold): {frac}.")
    return notes


GROUP_COLUMNS = ("steps", "level", "subject")  # example metadata worth breaking selections down by


def selection_composition(root: Path, examples: pl.DataFrame | None) -> dict | None:
    """Share of each strategy's selected pool items per value of a metadata column (steps, level, ...),
    next to the pool's own shares: what a strategy concentrates on."""
    files = sorted(root.glob(layout.step_tables(layout.SELECTED)))
    if examples is None or not files:
        return None
    column = next((c for c in GROUP_COLUMNS if c in examples.columns), None)
    if column is None:
        return None
    # Each replicate selects from its own pool: selections join their replicate's examples.
    selected = pl.concat([pl.read_parquet(f).with_columns(strategy=pl.lit(layout.strategy_of(f)),
                                                          replicate=pl.lit(layout.replicate_seed(f)))
                          for f in files])
    if not selected.height:
        return None
    pool = examples.filter(pl.col("split") == "pool").select("replicate", "id", column)
    values = sorted(pool[column].drop_nulls().unique().to_list())
    shares = (selected.join(pool, on=["replicate", "id"]).group_by("strategy", column).len()
              .with_columns(share=pl.col("len") / pl.col("len").sum().over("strategy")))
    pool_share = pool.group_by(column).len().with_columns(share=pl.col("len") / pl.col("len").sum())
    rows = [["pool"] + [f"{v:.2f}" for v in _shares(pool_share, column, values)]]
    for strategy in sorted(shares["strategy"].unique().to_list()):
        rows.append([strategy] + [f"{v:.2f}" for v in _shares(shares.filter(pl.col("strategy") == strategy),
                                                              column, values)])
    return {"title": f"What each strategy selected, by {column}",
            "caption": f"Share of selected pool items per {column} (all seeds and rounds), beside the pool's own.",
            "columns": ["selected by", *[f"{column} {v}" for v in values]], "rows": rows}


def _shares(frame: pl.DataFrame, column: str, values: list) -> list[float]:
    found = dict(zip(frame[column].to_list(), frame["share"].to_list()))
    return [found.get(v, 0.0) for v in values]


def dynamics_table(records: list[dict]) -> dict | None:
    """Per strategy and round, means over seeds of the step records: train/test accuracy, premem, memorized."""
    steps = _step_frame(records)
    if not steps.height or "memorized_last_epoch" not in steps.columns:
        return None
    wanted = ["memorized_last_epoch", "train_accuracy_last_epoch", "premem_mean", "accuracy"]
    present = [c for c in wanted if c in steps.columns]
    table = steps.group_by("strategy", "round").agg(
        pl.col("n_examples").first(), *[pl.col(c).mean() for c in present], pl.len().alias("seeds")
    ).sort("round", "strategy")
    rows = [[r["strategy"], r["round"], r["n_examples"], *[_fmt(r[c]) for c in present], r["seeds"]]
            for r in table.iter_rows(named=True)]
    names = {"memorized_last_epoch": "memorized (last epoch)", "train_accuracy_last_epoch": "train accuracy",
             "premem_mean": "pre-memorization accuracy", "accuracy": "test accuracy"}
    return {"title": "Learning dynamics per round",
            "caption": "Means over seeds. Train and pre-memorization accuracy appear where the round sampled its "
                       "trained examples (dynamics.record); dataset-level premem is the paper's predictor of test "
                       "accuracy, train accuracy is not.",
            "columns": ["strategy", "round", "n_examples", *[names[c] for c in present], "seeds"], "rows": rows}


def decision_table(records: list[dict]) -> dict | None:
    """The auto controller's decision log: per replicate and round, the arm chosen, the budget, the premem
    threshold, the arm probabilities, the last round's realized reward and the stopping verdict."""
    rows = []
    for info in records:
        decision = info.get("decision")
        if not decision:
            continue
        probs = ", ".join(f"{a} {p:.2f}" for a, p in decision["probabilities_after"].items())
        reward = decision.get("realized_reward_last")
        look = (decision.get("evidence") or {}).get("lookahead")
        probes = "–" if not look else ", ".join(
            f"{a} {e['p_look']:.2f} ({e['gain_vs_random']:+.3f})" for a, e in look["arms"].items())
        rows.append([info["strategy"], info["seed"], info["round"], decision["arm"] or "–", decision["budget"],
                     _fmt(decision.get("threshold")), probs, probes, look["bandit_draw"] if look else "–",
                     _fmt(look["cost"]["seconds"] if look else None), _fmt(reward),
                     decision["stop_reason"] or "", _fmt(info.get("dev_accuracy"))])
    if not rows:
        return None
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return {"title": "Decisions of the auto controller",
            "caption": "Per replicate and round: the arm that filled the round, its budget and premem threshold, the "
                       "bandit's probabilities (each kept at or above the floor), and with the lookahead each arm's "
                       "probe: P(best) from a fine-tune on its batch scored on dev, with its dev gain over "
                       "random (minus dev NLL, or dev accuracy), the arm the bandit alone would have drawn and the "
                       "probes' seconds; the round takes the arm of highest P(best) x P(arm) (without the lookahead, "
                       "the bandit's draw). Then the previous round's reward (dev gain per doubling of the data) and "
                       "the first stopping rule that fired. Every check and its evidence, the batches probed and the "
                       f"probes' cost, is in the step's {layout.STEP_RECORD} under decision.",
            "columns": ["strategy", "seed", "round", "arm", "budget", "threshold", "P(arm) after the last reward",
                        "probes: P(best) (dev gain)", "bandit draw", "probe s", "last reward", "stopped by",
                        "dev accuracy"], "rows": rows}


def lookahead_note(records: list[dict], config: dict) -> str | None:
    """What the auto controller's lookahead cost beside the whole comparison: fine-tunes, examples x epochs trained,
    seconds, and their shares of the comparison's (every step's training and seconds, the probes' included)."""
    looks = [cost for cost in (recorded_cost(r.get("decision")) for r in records) if cost]
    if not looks:
        return None
    finetunes = sum(x["finetunes"] for x in looks)
    passes = sum(x["examples_trained"] for x in looks)
    seconds = sum(x["seconds"] for x in looks)
    total_seconds = sum(r.get("seconds", 0.0) for r in records)
    epochs = config["train"]["epochs"]  # a step records its own only where it differs (compute-matched)
    total_passes = passes + sum(r.get("n_trained", 0) * r.get("epochs", epochs) for r in records)
    return (f"The auto controller's lookahead ran {finetunes} probe fine-tunes over {len(looks)} decisions: "
            f"{passes:,} examples x epochs ({passes / max(total_passes, 1):.1%} of the comparison's training) and "
            f"{seconds:.1f} s ({seconds / max(total_seconds, 1e-9):.1%} of the comparison's step seconds); the "
            "compute table books the seconds as auto's lookahead stage.")


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_run_report(run_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Write run_dir/report/{index.html, curves.png, summary.json}; returns the index.html path (of the local copy
    where run_dir is an fsspec URL, the report pushed to it as well)."""
    store = RunStore(run_dir, cache_dir)
    store.pull_all()
    index = _write_run_report(store)
    store.publish("report")
    return index


def _write_run_report(store: RunStore) -> Path:
    root = store.root
    config = yaml.safe_load((root / layout.CONFIG).read_text())
    evals = store.evaluations()
    if not evals.height:
        raise FileNotFoundError(f"{root} holds no finished step to report on")
    summary = {k: config[k] for k in ("name", "task", "seeds") if k in config}
    summary |= {"model": config["model"]["name_or_path"], "epochs": config["train"]["epochs"],
                "learning_rate": config["train"]["learning_rate"], "budgets": config["selection"]["budgets"],
                "iid_extra_budgets": config["selection"]["iid_extra_budgets"],
                "iid_reach": config["selection"].get("iid_reach"),
                "strategies": [s.get("label") or s["name"] for s in config["selection"]["strategies"]]}
    records, examples = _step_records(root), _examples(root)  # each read once, for every table and note below
    tables = [t for t in (dynamics_table(records), selection_composition(root, examples), decision_table(records))
              if t is not None]
    disk = store.disk_usage()
    summary["disk_bytes"] = disk
    notes = [*dynamics_notes(records, config, examples), *filter(None, [lookahead_note(records, config)]),
             f"Run store: {disk['total'] / 1e6:.1f} MB on disk, of which kept models {disk['models'] / 1e6:.1f} MB "
             f"and backend files {disk['backend'] / 1e6:.1f} MB (save_models, keep_models)."]
    return write_report(evals, store.timings(), root / "report",
                        title=f"curation-loop: {config.get('name', root.name)}",
                        config_summary=summary, notes=notes, tables=tables,
                        contrasts=auto_contrasts(config["selection"]["strategies"]))


def auto_contrasts(entries: list[dict]) -> list[tuple[str, str]]:
    """(auto's label, arm) for every `auto` in the config's selection.strategies and each arm it chooses from that
    also ran as that fixed strategy, unlabelled and with no params (random left out: auto's ratio is already
    against it)."""
    fixed = {e["name"] for e in entries if e["name"] != AUTO and not e.get("label") and not e.get("params")}
    return [(e.get("label") or AUTO, arm) for e in entries if e["name"] == AUTO
            for arm in (e.get("params") or {}).get("arms", AutoParams.arms) if arm in fixed and arm != "random"]
