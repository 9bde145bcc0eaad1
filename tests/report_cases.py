"""Hand-made finished run stores for the report tests: any config's plan of steps, written through the real
`RunStore` with the records and tables the engine commits, and test accuracies chosen so that each strategy's ratio
against i.i.d. lands where a case wants it (exact, a lower or upper bound, censored both ways, or undefined).

No model runs: a store for any preset and threshold setting takes milliseconds, so the report can be held against
the config space rather than against one preset. What the report reads is what the engine writes: the steps come
from `loop.run.plan`, the example counts from `loop.run.plan.rounds_of`, the auto controller's records from its own
`Decision`, a calibrated threshold from the fields `loop.run.engine` records.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from loop.config import RunConfig, build_config
from loop.control.controller import AUTO, Decision
from loop.run.plan import plan_steps, rounds_of
from loop.schema import COMPUTE_MATCHED, EVAL_SCHEMA, SHARED_STRATEGY
from loop.seeds import derived_seed
from loop.store import NOT_STORED, RunStore

SCALE = 16  # the example count where random's simulated curve starts its rise
REGIMES = ("exact", "lower", "upper", "mixed")  # assigned to the non-random strategies in turn


def thresholds(preset: str) -> list[list[str]]:
    """The threshold settings a preset's task allows: tau fixed and auto, and on the embedded task floor_scale
    fixed and auto."""
    out = [["dynamics.tau_mode=absolute", "dynamics.tau=-1.5", "dynamics.floor_scale=1.0"],
           ["dynamics.tau_mode=absolute", "dynamics.tau=auto", "dynamics.floor_scale=1.0"]]
    if build_config(preset).data.source == "embedded":
        out += [["dynamics.tau_mode=style_floor", "dynamics.floor_scale=0.9", "dynamics.tau=-2.4"],
                ["dynamics.tau_mode=style_floor", "dynamics.floor_scale=auto", "dynamics.tau=-2.4"]]
    return out


def iid_accuracy(n: float, seed: int, *, flat: bool = False) -> float:
    """Random's test accuracy at n examples on replicate `seed`: rising in log n (or falling a little: no ratio
    exists), each replicate at its own level, with a little deterministic noise."""
    level = 0.02 * ((seed * 7) % 5 - 2)
    noise = 0.004 * math.sin(3.1 * n + seed)
    rise = (-0.02 if flat else 0.12) * math.log(n / SCALE)
    return min(0.99, max(0.01, 0.35 + level + rise + noise))


def strategy_accuracy(regime: str, n: float, seed: int, budgets: list[float], *, flat: bool = False) -> float:
    """A strategy's accuracy under `regime`: 1.3x i.i.d.'s efficiency (exact), above the i.i.d. curve's largest
    budget (lower bound), below its first (upper bound), or alternating above and below by replicate (mixed)."""
    if regime == "mixed":
        regime = "lower" if seed % 2 == 0 else "upper"
    if regime == "lower":
        return min(0.99, iid_accuracy(max(budgets), seed, flat=flat) + 0.15)
    if regime == "upper":
        return max(0.01, iid_accuracy(min(budgets), seed, flat=flat) - 0.15)
    return iid_accuracy(1.3 * n, seed, flat=flat)


def seed_count(cfg: RunConfig) -> int:
    """The seed set's size the config asks for (the i.i.d. extension's budgets depend on it)."""
    return cfg.data.n_seeds if cfg.data.source == "embedded" else cfg.data.seed_limit or 64


def _examples(cfg: RunConfig, pool: int) -> pl.DataFrame:
    """A replicate's examples: the config's number of seeds, `pool` linked pool items, a few test and dev rows; the
    embedded task's metadata (steps, phrasing floor) where the config runs it."""
    rows, seeds = [], seed_count(cfg)
    for split, count in (("seed", seeds), ("pool", pool), ("test", 8), ("dev", 8)):
        for i in range(count):
            rows.append({"id": f"{split}-{i}", "seed_id": f"seed-{i % seeds}" if split == "pool" else None,
                         "question": f"q {split} {i}", "solution": f"s {i}\n#### {i}", "answer": str(i),
                         "split": split, "steps": 2 + i % 4, "style_floor": 0.1 + 0.01 * (i % 7)})
    frame = pl.DataFrame(rows, infer_schema_length=None)
    return frame if cfg.data.source == "embedded" else frame.drop("steps", "style_floor")


def _decision(round_: int, budget: int, stop: bool) -> dict:
    arms = {"random": 0.25, "premem": 0.25, "loss": 0.5}
    return Decision(round=round_, arm=None if stop else "loss", budget=0 if stop else budget,
                    threshold=None, probabilities_before=arms, probabilities_after=arms,
                    expected_reward=None if stop else 0.01, realized_reward_last=0.02 if round_ > 1 else None,
                    stop=stop, stop_reason="plateau" if stop else None).record()


def write_finished_run(root: Path, cfg: RunConfig, *, flat: bool = False, auto_stops: bool = False) -> Path:
    """A finished run of `cfg` at `root` (every planned step committed); returns root.

    `flat`: random's accuracy does not grow with n (every ratio undefined). `auto_stops`: the auto controller stops
    before its last round (a committed step with no curve point)."""
    store = RunStore(root)
    store.open(cfg, {"versions": {}})
    seeds = seed_count(cfg)
    budgets = {s: [seeds + sum(rounds_of(cfg, s, seeds)[:r]) for r in range(len(rounds_of(cfg, s, seeds)) + 1)]
               for s in {*cfg.selection.strategy_names, COMPUTE_MATCHED, "random"}}
    iid_budgets = budgets["random"]
    others = [s for s in cfg.selection.strategy_names if s != "random"] + [COMPUTE_MATCHED]
    regime = {s: REGIMES[i % len(REGIMES)] for i, s in enumerate(others)}
    pool = max(b[-1] for b in budgets.values()) - seeds
    calibrating = cfg.dynamics.auto_tau
    for seed in cfg.seeds:
        store.write_parquet(f"data/seed-{seed}/examples.parquet", _examples(cfg, pool))
    for step in plan_steps(cfg):
        name = "random" if step.strategy == SHARED_STRATEGY else step.strategy
        n = budgets[name][step.round]
        spec = cfg.selection.spec(step.strategy) if step.strategy in cfg.selection.strategy_names else None
        is_auto = spec is not None and spec.name == AUTO
        stopped = is_auto and auto_stops and step.round == len(cfg.selection.budgets)
        if step.round == 0 or name == "random":
            accuracy = iid_accuracy(n, step.seed, flat=flat)
        else:
            accuracy = strategy_accuracy(regime[name], n, step.seed, iid_budgets, flat=flat)
        info: dict = {"seed": step.seed, "strategy": step.strategy, "round": step.round, "n_examples": n,
                      "n_trained": n, "n_selected": n - budgets[name][max(0, step.round - 1)],
                      "memorized_last_epoch": 0.5, "median_nll_last_epoch": 0.2,
                      "train_accuracy_last_epoch": 0.7, "premem_mean": 0.55, "accuracy": accuracy,
                      "test_unparseable": 0.05, "dev_accuracy": accuracy - 0.01, "dev_graded": 8}
        if step.round and spec is not None and spec.name == "premem":
            info["score_mean_all"] = 0.4
        if step.round and is_auto:
            info["decision"] = _decision(step.round, n - budgets[name][step.round - 1], stopped)
        if step.round == 0 and calibrating:
            value = -1.4 - 0.05 * step.seed if cfg.dynamics.tau_mode == "absolute" else 0.95 + 0.05 * step.seed
            shift = value if cfg.dynamics.tau_mode == "absolute" else math.log(value)
            info["tau_calibration"] = {"parameter": "tau" if cfg.dynamics.tau_mode == "absolute" else "floor_scale",
                                       "value": value, "shift": shift, "plateau": [shift, shift], "r2_dev": 0.6,
                                       "checkpoints": 3}
        rng = np.random.default_rng(derived_seed("report-case", step.seed, step.round))
        selected = [] if step.round == 0 or stopped else [
            f"pool-{i}" for i in sorted(rng.choice(pool, info["n_selected"], replace=False).tolist())]
        evals = pl.DataFrame(schema=EVAL_SCHEMA) if stopped else pl.DataFrame(
            [{"strategy": step.strategy, "seed": step.seed, "round": step.round, "n_examples": n,
              "accuracy": accuracy, "n_questions": 8, "n_samples": 1}], schema=EVAL_SCHEMA)
        if stopped:
            info |= {"stopped": True, "n_selected": 0, "stop_reason": "plateau"}
        timings = pl.DataFrame({"strategy": step.strategy, "seed": step.seed, "round": step.round,
                                "stage": ["select", "train", "eval"], "seconds": [0.1, 1.0, 0.5]})
        store.commit_step(step.seed, step.strategy, step.round,
                          {"selected": pl.DataFrame({"id": selected}, schema={"id": pl.String}), "eval": evals,
                           "timings": timings}, info)
    return root


def sweep_as(src: Path, dst: Path, cfg: RunConfig) -> Path:
    """A copy of the finished analysis sweep at `src` (one replicate, seed 0) as a sweep of `cfg`: its config
    written in place of the one it ran under, and replicate 0's runs copied to every other seed of cfg.seeds with
    their test and dev accuracies moved a little (so that replicates differ, as real ones do). Returns dst."""
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "report", ignore_errors=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude=NOT_STORED), sort_keys=False))
    for seed in cfg.seeds:
        if seed == 0:
            continue
        shutil.copytree(src / "data" / "seed-0", dst / "data" / f"seed-{seed}")
        for folder in sorted((src / "analysis" / "seed-0").glob("run-*")):
            target = dst / "analysis" / f"seed-{seed}" / folder.name
            target.mkdir(parents=True)
            record = json.loads((folder / "run.json").read_text())
            key = record["key"].replace("s0-", f"s{seed}-", 1)
            (target / "run.json").write_text(json.dumps(record | {"seed": seed, "key": key}))
            for table in folder.glob("*.parquet"):
                frame = pl.read_parquet(table)
                if "run" in frame.columns:
                    frame = frame.with_columns(run=pl.lit(key))
                if table.stem == "accuracy":
                    frame = frame.with_columns(accuracy=(pl.col("accuracy") + 0.03 * seed).clip(0.0, 1.0))
                frame.write_parquet(target / table.name)
    for seed in {int(p.name.split("-")[1]) for p in (dst / "analysis").glob("seed-*")} - set(cfg.seeds):
        shutil.rmtree(dst / "analysis" / f"seed-{seed}")
        shutil.rmtree(dst / "data" / f"seed-{seed}", ignore_errors=True)
    return dst
