"""End to end: a real local Prefect server, the deployments of prefect.yaml served, and
`prefect deployment run curation-loop/default` and `predict-generalization/default` producing their reports where
the README says."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prefect_env(tmp_path):
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    port = api.split(":")[2].split("/")[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", port], env=env, stdout=open(logs / "server.log", "w"),
                              stderr=subprocess.STDOUT)
    procs = [server]
    try:
        wait_for(lambda: healthy(api), 120, "the Prefect server")
        yield env, procs, logs
    finally:
        for proc in reversed(procs):  # the serving process before the server it talks to
            stop(proc)


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
    params = json.dumps({"preset": "smoke", "out_dir": str(out_dir)})
    run = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "curation-loop/default", "--param",
         f"config={params}", "--watch", "--watch-timeout", "600"],
        env=env, capture_output=True, text=True, timeout=700)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + (logs / "serve.log").read_text()[-3000:]
    assert "Completed" in run.stdout
    report = out_dir / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "loss", "perplexity", "premem"}
    assert (report / "index.html").stat().st_size > 1000 and (report / "curves.png").stat().st_size > 1000
    # The flow run published its verdict and headline table as artifacts on the server.
    code = ("import asyncio; from prefect.client.orchestration import get_client\n"
            "async def main():\n"
            "    async with get_client() as c:\n"
            "        print(sorted({a.key for a in await c.read_artifacts() if a.key}))\n"
            "asyncio.run(main())")
    keys = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "curation-headline" in keys.stdout and "curation-verdict" in keys.stdout, keys.stdout + keys.stderr
    assert len(summary["verdict"]) == 3

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
