"""Run a preset in this process, step by step in plan order, and collect its behaviour-defining tables; write them as
the stored reference (only on purpose) or compare a fresh run with it.

    python -m tests.reference.run smoke --regenerate     # rewrite tests/reference/smoke/ from the current code
    python -m tests.reference.run default --check        # rerun default and compare (about 5 minutes on 2 cores)

Regenerate only where a change of behaviour is meant, and say so in the commit: the reference is what the code did.

The test `tests/reference/test_identical_behaviour.py` runs the check (default only with
CURATION_LOOP_REFERENCE_DEFAULT=1). Runs go step by step in plan order in one process (workers ignored): a step's
result does not depend on the order or process it runs in, which the resume and sharding tests hold.."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import polars as pl

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)

from tests.reference.tables import collect, differences  # noqa: E402

HERE = Path(__file__).resolve().parent
MACHINE_FILE = "machine.json"
# name -> (preset, overrides). smoke and default are the presets as shipped; smoke-paths reaches what they do not: every
# strategy (so every signal scope: static, base, round, checkpoint), the auto controller with a generator and paired
# rewards (its lookahead off: the generator is reached only where premem, the arm it is pinned to, fills the round),
# the auto controller's lookahead (auto_lookahead), the compute-matched reference and a threshold calibrated on dev.
CASES = {
    "smoke": ("smoke", []),
    "default": ("default", []),
    "smoke-paths": ("smoke", [
        "data.n_seeds=6", "data.pool_per_seed=2", "data.n_test=8", "data.n_dev=4",
        "selection.budgets=[6, 4]", "selection.compute_matched=true", "dynamics.floor_scale=auto",
        "selection.strategies=[random, premem, difficulty, early_loss, ifd, length, random_per_seed, "
        "{name: auto, params: {arms: [premem], floor: 0.0, generate: embedded, generate_per_seed: 3, "
        "threshold_range: [0.0, 0.0], lookahead: false}}, "
        "{name: auto, label: auto_lookahead, params: {arms: [premem]}}]"]),
}


def run_case(case: str, out_dir: Path) -> dict[str, pl.DataFrame]:
    """Every step of `case` (`CASES`) in plan order in one Engine (on the CPU), then its tables."""
    from loop.config import build_config
    from loop.run.engine import Engine
    from loop.run.plan import plan_steps

    preset, overrides = CASES[case]
    cfg = build_config(preset, overrides=[*overrides, f"out_dir={out_dir}", "device=cpu"])
    engine = Engine(cfg)
    try:
        engine.prepare()
        for step in plan_steps(cfg):
            engine.run_step(step)
    finally:
        engine.close()
    return collect(out_dir)


def machine() -> dict[str, str]:
    """What decides a CPU run's float bits beyond the code: torch's version and the vector instructions its kernels
    use on this CPU (AVX2 and AVX-512 round float32 sums differently)."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def reference(case: str) -> dict[str, pl.DataFrame]:
    folder = HERE / case
    return {path.stem: pl.read_parquet(path) for path in sorted(folder.glob("*.parquet"))}


def bitwise_here(case: str) -> bool:
    """Whether this machine computes the reference's floats to the bit: the same torch and vector instructions as
    the machine that wrote it (`machine.json`). Elsewhere floats are compared within float32 rounding."""
    path = HERE / case / MACHINE_FILE
    return path.exists() and json.loads(path.read_text()) == machine()


def compare(case: str, tables: dict[str, pl.DataFrame]) -> tuple[str, list[str]]:
    """How the rerun was compared (in words) and what differs."""
    exact = bitwise_here(case)
    how = "to the last bit" if exact else "within float32 rounding (the reference's machine.json is not this one)"
    return how, differences(reference(case), tables, exact=exact)


def write_reference(case: str, tables: dict[str, pl.DataFrame]) -> None:
    folder = HERE / case
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    for name, frame in tables.items():
        frame.write_parquet(folder / f"{name}.parquet", compression="zstd", compression_level=19)
    (folder / MACHINE_FILE).write_text(json.dumps(machine(), indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--regenerate", action="store_true", help="overwrite the stored reference")
    mode.add_argument("--check", action="store_true", help="compare a fresh run with the stored reference")
    parser.add_argument("--keep", help="run into this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"reference-{args.case}-") as tmp:
        tables = run_case(args.case, Path(args.keep or tmp))
    if args.regenerate:
        write_reference(args.case, tables)
        print(f"wrote {HERE / args.case}")
        return 0
    how, found = compare(args.case, tables)
    print("\n".join(found) if found else f"{args.case}: identical to the reference, {how}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
