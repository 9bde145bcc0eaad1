"""End to end: a real local Prefect server, the deployments of prefect.yaml served, and
`prefect deployment run curation-loop/default` and `predict-generalization/default` producing their reports where
the README says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.servers import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_deployment_run_writes_the_report(prefect_env, tmp_path):
    env, procs, logs = prefect_env
    serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve"], cwd=ROOT, env=env,
                             stdout=open(logs / "serve.log", "w"), stderr=subprocess.STDOUT)
    procs.append(serve)

    def deployment_known() -> bool:
        assert serve.poll() is None, (logs / "serve.log").read_text()[-3000:]
        out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "inspect", "curation-loop/default"],
                             env=env, capture_output=True, text=True)
        return out.returncode == 0

    wait_for(deployment_known, 120, "the served deployment curation-loop/default")
    out_dir = tmp_path / "run"
    params = json.dumps({"preset": "smoke", "out_dir": str(out_dir), "train": {"epochs": 1},
                         "data": {"n_test": 8, "n_seeds": 8}, "sampling": {"max_new_tokens": 48},
                         "selection": {"budgets": [8], "iid_extra_budgets": [],
                                       "strategies": [{"name": "random"}, {"name": "premem"}]}})
    run = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "curation-loop/default", "--param",
         f"config={params}", "--watch", "--watch-timeout", "600"],
        env=env, capture_output=True, text=True, timeout=700)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + (logs / "serve.log").read_text()[-3000:]
    assert "Completed" in run.stdout
    report = out_dir / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "premem"}
    assert (report / "index.html").stat().st_size > 1000 and (report / "curves.png").stat().st_size > 1000
    # The flow run published its verdict and headline table as artifacts on the server.
    code = ("import asyncio; from prefect.client.orchestration import get_client\n"
            "async def main():\n"
            "    async with get_client() as c:\n"
            "        print(sorted({a.key for a in await c.read_artifacts() if a.key}))\n"
            "asyncio.run(main())")
    keys = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "curation-headline" in keys.stdout and "curation-verdict" in keys.stdout, keys.stdout + keys.stderr
    assert len(summary["verdict"]) == 1

    # The paper's analyses through their deployment, on the same server and serving process (a tiny sweep).
    analysis_dir = tmp_path / "analysis"
    params = json.dumps({"preset": "analyze-default", "out_dir": str(analysis_dir), "workers": 1,
                         "data": {"n_seeds": 6, "n_dev": 6, "n_test": 8},
                         "analysis": {"runs": [{"learning_rate": 3.0e-4, "epochs": 2}, {"learning_rate": 1.0e-4, "epochs": 1}],
                                      "robustness": {"run": 0, "n_samples": 2}, "n_boot": 200}})
    run = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "predict-generalization/default", "--param",
         f"config={params}", "--watch", "--watch-timeout", "600"],
        env=env, capture_output=True, text=True, timeout=700)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + (logs / "serve.log").read_text()[-3000:]
    summary = json.loads((analysis_dir / "report" / "summary.json").read_text())
    assert summary["kind"] == "predict-generalization" and summary["generalization"]["n_runs"] == 2
    assert summary["tau"]["calibrated"] is not None and summary["robustness"]["runs"] == ["s0-r0"]
    keys = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "predict-generalization" in keys.stdout, keys.stdout + keys.stderr
