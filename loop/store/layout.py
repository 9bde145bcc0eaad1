"""Every path of the run store, built here and nowhere else (a test holds every other module to it).

    config.yaml, manifest.json             what was run, with library versions and data/model hashes
    data/seed-S/examples.parquet           the examples replicate S's steps read (its own draw of the data),
                                           with report.json (what loading did) and contamination.parquet beside them
    signals/seed-S/NAME.parquet            round-independent signals of replicate S, computed once
                                           (NAME-cache/: what a provider keeps between calls)
    steps/seed-S/STRATEGY/round-R/         selected, ledger, signals, eval, timings (.parquet), step.json (and model/ if
                                           kept; generated.parquet where the auto controller made items; round 0 of a
                                           run with an auto threshold: tau_curve.parquet)
    probes/seed-S/STRATEGY/round-R/KEY.parquet  each finished probe of the auto controller's lookahead (per evaluation
                                           item, its measurement), kept before the step commits so a rerun of the
                                           step reads it back instead of training it again
    analysis/seed-S/run-K/                 the analysis sweep's run K: ledger, accuracy (dev and test accuracy per
                                           checkpoint), robustness, timings (.parquet), run.json
    backend/                               what a backend writes (a vLLM server's log, checkpoints it serves)
    report/                                index.html, curves.png, summary.json
    tracking/STRATEGY/seed-S/round-R/      TensorBoard event files of each round (tracking.report_to; the default
                                           tracking.dir), never read by the loop and never pushed to a remote location

Paths are relative to the store's root (strings, for the store's read and write calls) unless a function takes the
root; the glob patterns name every committed folder or file of a kind."""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
STEP_RECORD = "step.json"  # a step folder's record, written last: the folder is committed once it is there
RUN_RECORD = "run.json"  # an analysis run's record
BACKEND = "backend"
REPORT = "report"
TRACKING = "tracking"  # offline experiment trackers' folder (tracking.dir's default)
SUMMARY = "summary.json"

# the tables of a step folder (each NAME.parquet)
SELECTED, LEDGER, SIGNALS, EVAL, TIMINGS, GENERATED, TAU_CURVE = (
    "selected", "ledger", "signals", "eval", "timings", "generated", "tau_curve")
MODEL = "model"  # a step's saved model folder

# globs over the whole store
DATA_FILES = "data/seed-*/*"
EXAMPLE_FILES = "data/seed-*/examples.parquet"
SIGNAL_FILES = "signals/seed-*/*.parquet"
STEP_FOLDERS = "steps/*/*/round-*"
STEP_RECORDS = f"{STEP_FOLDERS}/{STEP_RECORD}"
ANALYSIS_FOLDERS = "analysis/*/run-*"
ANALYSIS_RECORDS = f"analysis/seed-*/run-*/{RUN_RECORD}"
COMMITTED = ((STEP_FOLDERS, STEP_RECORD), (ANALYSIS_FOLDERS, RUN_RECORD))  # (folder glob, its record)


def replicate_seed(path: Path) -> int:
    """The replicate of a path under `data/seed-S/`, `signals/seed-S/` or `steps/seed-S/` (its `seed-S` part)."""
    return int(next(p for p in reversed(path.parts) if p.startswith("seed-"))[len("seed-"):])


def data_dir(seed: int | str) -> str:
    return f"data/seed-{seed}"


def examples_path(seed: int) -> str:
    return f"{data_dir(seed)}/examples.parquet"


def data_report_path(seed: int | str) -> str:
    return f"{data_dir(seed)}/report.json"


def contamination_path(seed: int) -> str:
    return f"{data_dir(seed)}/contamination.parquet"


def signal_path(seed: int, name: str) -> str:
    """Where a static or base-model signal of replicate `seed` is stored (round signals live in their step)."""
    return f"signals/seed-{seed}/{name}.parquet"


def signal_cache(seed: int, name: str) -> str:
    """The folder signal provider `name` keeps its cache in, for replicate `seed`."""
    return f"signals/seed-{seed}/{name}-cache"


def step_dir(seed: int, strategy: str, round_: int) -> str:
    return f"steps/seed-{seed}/{strategy}/round-{round_}"


def probe_path(seed: int, strategy: str, round_: int, key: str) -> str:
    """Where the lookahead probe `key` of step (seed, strategy, round) is kept (`loop.control.probe_store`)."""
    return f"probes/seed-{seed}/{strategy}/round-{round_}/{key}.parquet"


def chain_folders(seed: int, strategy: str) -> str:
    """The glob of the step folders of the chain (seed, strategy)."""
    return f"steps/seed-{seed}/{strategy}/round-*"


def step_tables(name: str, seed: str = "*", strategy: str = "*") -> str:
    """The glob of table `name` (`LEDGER`, `SELECTED`, ...) of every step, or of one replicate's or strategy's."""
    return f"steps/seed-{seed}/{strategy}/round-*/{name}.parquet"


def step_records(seed: str = "*", strategy: str = "*", round_: str = "*") -> str:
    """The glob of the step.json records of every step, or of the given replicate, strategy or round."""
    return f"steps/seed-{seed}/{strategy}/round-{round_}/{STEP_RECORD}"


def round_of(folder: Path) -> int:
    """R of a step folder `.../round-R`."""
    return int(folder.name[len("round-"):])


def strategy_of(path: Path) -> str:
    """The strategy of a file in a step folder (`steps/seed-S/STRATEGY/round-R/NAME`)."""
    return path.parts[-3]


def is_step_or_run(folder: Path) -> bool:
    """Whether `folder` is a step folder or an analysis run's (what a damaged file's hint names to remove)."""
    return folder.name.startswith("round-") or folder.name.startswith("run-")


def tracking_run(strategy: str, seed: int, round_: int) -> str:
    """A round's experiment-tracker run: its name in every tracker and its folder under `TRACKING` (or tracking.dir)."""
    return f"{strategy}/seed-{seed}/round-{round_}"


def analysis_run_dir(seed: int, index: int) -> str:
    return f"analysis/seed-{seed}/run-{index}"


def analysis_tables(name: str) -> str:
    """The glob of table `name` (timings, robustness, ...) of every analysis run."""
    return f"analysis/seed-*/run-*/{name}.parquet"


def table_file(name: str) -> str:
    """The file name of table `name` in a committed folder."""
    return f"{name}.parquet"
