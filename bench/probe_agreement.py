"""Does the auto controller's lookahead see what training then shows? Read from one finished comparison.

    python bench/probe_agreement.py RUN_DIR [--auto auto] [--round 1]

RUN_DIR is a comparison that ran `auto` (lookahead on) beside fixed arms and `random`. For every replicate and every
arm that also ran as a fixed strategy, it pairs
- the probe's dev gain over random at `--round` (auto's decision record: a fine-tune on that arm's batch), with
- the realized test gain: that fixed chain's test accuracy at the same round minus random's, on the same replicate.
Both chains start from the same round-0 model, so the pair asks whether the probe ranks arms as a full round does.

It prints Pearson's r over all pairs with a 95% interval from resampling whole replicates
(`loop.metrics.prediction.bootstrap_over_runs`), how many probed batches equal the fixed chain's selection (premem's
threshold is auto's own choice, so its batches can differ), and in how many replicates the probe's top arm is the
arm with the largest realized gain, beside the count chance would give; and per arm, how its probe gain varies
across replicates beside its standard error over the evaluation items (`noise_split`: where the two are alike, the
items drawn make most of a probe's noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop.metrics.prediction import bootstrap_over_runs, pearson  # noqa: E402
from loop.store import layout  # noqa: E402
from loop.store.run_store import RunStore  # noqa: E402


def pairs(store: RunStore, auto: str, round_: int) -> list[dict]:
    """One row per (replicate, probed arm that also ran as a fixed chain)."""
    rows = []
    records = store.root.glob(layout.step_records(strategy=auto, round_=str(round_)))
    for seed in sorted(layout.replicate_seed(path) for path in records):
        if not store.is_done(seed, auto, round_):
            continue
        look = store.read_record(seed, auto, round_)["decision"]["evidence"].get("lookahead")
        if not look:
            raise SystemExit(f"{auto} at round {round_} of seed {seed} has no lookahead evidence (lookahead off?)")
        random_acc = store.read_record(seed, "random", round_)["accuracy"]
        for arm, probe in look["arms"].items():
            if arm == "random" or not store.is_done(seed, arm, round_):
                continue
            selected = store.step_frame(seed, arm, round_, "selected")
            rows.append({"seed": seed, "arm": arm, "probe_gain": probe["gain_vs_random"], "gain_se": probe.get("gain_se"),
                         "test_gain": store.read_record(seed, arm, round_)["accuracy"] - random_acc,
                         "same_batch": set(probe["batch"]) <= set(selected["id"].to_list())})
    return rows


def top_arm_hits(rows: list[dict]) -> tuple[int, int, float]:
    """Replicates whose highest probe gain is also the highest realized gain, of those with 2+ arms; and chance."""
    by_seed: dict[int, list[dict]] = {}
    for row in rows:
        by_seed.setdefault(row["seed"], []).append(row)
    compared = [r for r in by_seed.values() if len(r) > 1]
    hits = sum(max(r, key=lambda x: x["probe_gain"])["arm"] == max(r, key=lambda x: x["test_gain"])["arm"]
               for r in compared)
    return hits, len(compared), sum(1 / len(r) for r in compared)


def noise_split(rows: list[dict]) -> dict[str, tuple[float, float, float]]:
    """Per arm: (mean probe gain, its standard deviation across replicates, the mean of its standard error over the
    evaluation items within a replicate). Where the spread across replicates is about the within-replicate error,
    the evaluation items drawn make most of a probe's noise (more items would sharpen it); where it is well above,
    training or the replicates' own differences do."""
    out = {}
    for arm in sorted({x["arm"] for x in rows}):
        gains = np.array([x["probe_gain"] for x in rows if x["arm"] == arm], dtype=float)
        errors = [x["gain_se"] for x in rows if x["arm"] == arm and x["gain_se"] is not None]
        spread = float(gains.std(ddof=1)) if gains.size > 1 else float("nan")
        out[arm] = (float(gains.mean()), spread, float(np.mean(errors)) if errors else float("nan"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--auto", default="auto", help="the label of the auto strategy with lookahead")
    parser.add_argument("--round", type=int, default=1)
    args = parser.parse_args()
    rows = pairs(RunStore(args.run_dir), args.auto, args.round)
    if not rows:
        raise SystemExit(f"no probed arm of {args.auto} ran as a fixed chain in {args.run_dir}")
    r = bootstrap_over_runs(pearson, [x["probe_gain"] for x in rows], [x["test_gain"] for x in rows],
                            [x["seed"] for x in rows])
    hits, compared, chance = top_arm_hits(rows)
    print(f"{r.n_points} probe/realized pairs over {r.n_runs} replicates "
          f"({sum(x['same_batch'] for x in rows)} probed batches equal to the fixed chain's selection)")
    print(f"r(probe dev gain, realized round-{args.round} test gain) = {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]")
    print(f"probe's top arm = realized top arm in {hits} of {compared} replicates (chance {chance:.1f})")
    for arm, (gain, spread, error) in noise_split(rows).items():
        mine = [x for x in rows if x["arm"] == arm]
        print(f"  {arm}: mean probe gain {gain:+.4f} (SD across replicates {spread:.4f}, mean standard error over "
              f"the items {error:.4f}), mean realized test gain {sum(x['test_gain'] for x in mine) / len(mine):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
