"""Named fault points: the places where the fault-injection harness (`bench/fault_injection.py`) kills the loop.

`reached(name)` is called where a unit of a stage's work begins: an optimizer step, a checkpoint's sampling, an NLL
batch, a signal's computation, a selection, a lookahead probe just kept, a test evaluation, a store file or step folder
about to be renamed into place, a report file about to be renamed, a file about to be pushed to a remote store, a
Prefect task, a scoring shard's work unit. Normally it does nothing but test one module variable. Three environment
variables, read when this module is imported, turn it on:

- `CURATION_LOOP_FAULT_LOG=FILE`: append each point's name to FILE as it is reached (the harness counts the
  points an uninterrupted run reaches, to draw its kills from them);
- `CURATION_LOOP_KILL_AT=NAME:K`: the K-th time (1-based) this process reaches NAME, SIGKILL its process group
  (the run and what it started: a Prefect server, workers), as a machine going down would: no handler runs,
  nothing is flushed. Start the run in a session of its own (the harness does) so that the group is the run's.
- `CURATION_LOOP_FAIL_ONCE=NAME:FILE`: the first process to reach NAME (of all processes sharing FILE's folder:
  the workers of a cluster) creates FILE and raises `InjectedFault` there; every later arrival passes. The
  scoring-shard test fails one shard this way to see it retried alone.

Nothing a run computes depends on them; a kill at a point stands for a kill anywhere in the work that follows it,
since nothing of a step is kept until the step commits but its finished lookahead probes, which a rerun reads back
(the harness's timed kills cover the moments between).
"""

from __future__ import annotations

import os
import signal

POINTS = ("train.step", "dynamics.checkpoint", "nll.batch", "signals.compute", "selection.select",
          "lookahead.probe", "evaluation.sample", "store.rename", "step.rename", "report.rename", "remote.push",
          "prefect.task", "shard.unit")

_LOG = os.environ.get("CURATION_LOOP_FAULT_LOG")
_KILL = os.environ.get("CURATION_LOOP_KILL_AT")
_FAIL = os.environ.get("CURATION_LOOP_FAIL_ONCE")
_kill_name, _, _kill_count = (_KILL or "").rpartition(":")
_fail_name, _, _fail_file = (_FAIL or "").partition(":")
_seen: dict[str, int] = {}
_active = bool(_LOG or _KILL or _FAIL)


class InjectedFault(RuntimeError):
    """The failure `CURATION_LOOP_FAIL_ONCE` asked for."""


def reached(name: str) -> None:
    """Mark fault point `name` (one of POINTS) as reached; kills the process where the environment says so."""
    if not _active:
        return
    if _LOG:
        with open(_LOG, "a") as handle:
            handle.write(name + "\n")
    if name == _kill_name:
        _seen[name] = _seen.get(name, 0) + 1
        if _seen[name] == int(_kill_count):
            os.killpg(os.getpgid(0), signal.SIGKILL)
    if name == _fail_name:
        try:
            os.close(os.open(_fail_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # exactly one process wins
        except FileExistsError:
            return
        raise InjectedFault(f"fault injected at {name} (CURATION_LOOP_FAIL_ONCE)")
