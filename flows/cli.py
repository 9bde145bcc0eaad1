"""`curation-loop` command line: run a comparison or the paper's analyses without a server, list strategies,
re-render a report, serve the deployments."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

# Offline by default: no hub lookups, no telemetry; a slow 2-core machine needs time to start Prefect.
for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "DO_NOT_TRACK": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                   "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)


@contextmanager
def _one_server():
    """Without PREFECT_API_URL, one temporary Prefect server for the run and every worker process it spawns: each
    worker would otherwise start a server of its own (15-20 s apiece on a small machine)."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()  # the instance Prefect's own ephemeral mode would start
    server.start(timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    os.environ["PREFECT_API_URL"] = server.api_url  # read by the spawned workers
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        # The server stops at exit (start() registers that), after Prefect's log and event workers have drained:
        # stopping it here left them retrying against a closed port for over a minute.
        del os.environ["PREFECT_API_URL"]


def _print_verdict(index: Path) -> None:
    """The report's verdict (one line per strategy) or an analysis's R^2 lines, from the summary.json beside it."""
    from reports.digest import read_summary, verdict_lines

    for line in verdict_lines(read_summary(index)):
        print(f"- {line}")


def _config(args: argparse.Namespace):
    """The config the arguments describe, or None after printing why it is invalid."""
    from pydantic import ValidationError

    from loop.config import build_config

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out_dir={args.out}")
    try:
        return build_config(args.preset, args.config, overrides)
    except (ValidationError, ValueError) as err:
        print(f"curation-loop: invalid config: {err}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    if args.command == "analyze":
        from flows.analysis import predict_generalization as flow
    else:
        from flows.curation import curation_loop as flow

    with _one_server():
        path = flow(config)
    print()
    _print_verdict(Path(path))
    print(f"\nReport written to {os.path.abspath(path)}")
    return 0


def _strategies(_: argparse.Namespace) -> int:
    import strategies.registry as registry
    from loop.control.controller import AUTO, DESCRIPTION, AutoParams

    for name in registry.names():
        item = registry.resolve(name)
        needs = item.needs_for({})
        reads = f" [reads: {', '.join(needs)}]" if needs else ""
        print(f"{name:<16} {item.description}{reads}")
    # auto is no registered strategy but the controller choosing among them: `{name: auto, params: {...}}`
    print(f"{AUTO:<16} {DESCRIPTION} Params, with their defaults:")
    for key, default in AutoParams.options().items():
        means = f" (= {AutoParams.NULL_MEANS[key]})" if key in AutoParams.NULL_MEANS else ""
        print(f"{'':<18}{key}: {json.dumps(default)}{means}")  # as a config file writes it (JSON is YAML)
    return 0


def _signals(_: argparse.Namespace) -> int:
    import loop.signals.registry as signals

    for name in signals.names():
        item = signals.resolve(name)
        print(f"{name:<16} {item.scope:<6} per {item.level:<4}  {item.description} [writes: {', '.join(item.columns)}]")
    return 0


def _report(args: argparse.Namespace) -> int:
    if (Path(args.run_dir) / "analysis").is_dir():
        from reports.analysis import write_analysis_report as write
    else:
        from reports.run import write_run_report as write

    index = write(args.run_dir)
    _print_verdict(index)
    print(index)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flows.deploy import serve

    serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="curation-loop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text, example in (
            ("run", "run a comparison (the curation-loop flow, no server needed)", "default, smoke, ..."),
            ("analyze", "the paper's analyses: R^2 of test accuracy on pre-memorization accuracy over a sweep of "
                        "training runs, tau calibrated on dev, robustness (the predict-generalization flow)",
             "analyze-default, analyze-smollm2-gsm8k")):
        run = sub.add_parser(name, help=text)
        run.add_argument("--preset", default=None if name == "run" else "analyze-default",
                         help=f"a preset in loop/presets ({example})")
        run.add_argument("--config", default=None, help="a YAML config file (applied after the preset)")
        run.add_argument("--out", default=None, help="run folder (out_dir); rerunning resumes there")
        run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=4 seeds=[0,1]")
        run.set_defaults(func=_run)
    sub.add_parser("strategies", help="list registered strategies").set_defaults(func=_strategies)
    sub.add_parser("signals", help="list registered signal providers (scope, level, columns)").set_defaults(
        func=_signals)
    rep = sub.add_parser("report", help="(re)write the report of a run folder")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_report)
    sub.add_parser("serve", help="serve the deployments of prefect.yaml from this process").set_defaults(func=_serve)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
