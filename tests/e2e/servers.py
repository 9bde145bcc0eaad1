"""A real local Prefect server for the end-to-end tests (its own home and port), and the helpers they share."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

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


def psql(url: str, sql: str) -> str:
    """Run `sql` on the database of `url` (postgres_url's form); its output, unaligned."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-qtA", "-c", sql], check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster (initdb, trust auth, localhost, a free port) for the Prefect server, where the
    PostgreSQL server binaries are installed; None elsewhere (the Prefect server then uses its SQLite default)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if None in (initdb, pg_ctl, shutil.which("psql")) or (os.geteuid() == 0 and shutil.which("runuser") is None):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="curation-loop-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust"]), check=True,
                   capture_output=True)
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
                                 f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def prefect_env(request, tmp_path):
    """A Prefect server of this test's own: on PostgreSQL where the test asks for postgres_url too and there is one
    (its database emptied first), else on Prefect's SQLite default (its migrations run faster)."""
    postgres_url = request.getfixturevalue("postgres_url") if "postgres_url" in request.fixturenames else None
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    if postgres_url is not None:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = postgres_url
        port = postgres_url.rsplit(":", 1)[1].split("/")[0]
        psql(postgres_url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
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


@pytest.fixture
def ray_cluster(prefect_env):
    """A Ray head and a second worker node, one CPU each, on this machine: (address, the environment a driver
    needs to join it, the file whose creation marks the one shard failure its workers inject)."""
    if shutil.which("ray", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("ray is not installed")
    env, _, _ = prefect_env
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    address = f"127.0.0.1:{free_port()}"
    # Ray's sockets live under its temp folder: a short path (a pytest tmp_path is past the socket-path limit).
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # Token authentication, as a cluster should run: the nodes and the flow's driver share the token.
    joining = {"RAY_TMPDIR": folder, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    marker = Path(folder) / "failed-once"
    # The workers are the nodes' processes: the fault to inject is theirs to read.
    env = {**env, **joining, "CURATION_LOOP_FAIL_ONCE": f"shard.unit:{marker}"}
    common = ["--num-cpus", "1", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]

    def start(*args):
        done = subprocess.run([ray, "start", *args, *common], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    start("--head", "--port", address.split(":")[1], "--include-dashboard", "false")
    try:
        start("--address", address)

        def two_nodes() -> bool:  # the joining node registers with the head shortly after `ray start` returns
            status = subprocess.run([ray, "status", "--address", address], env=env, capture_output=True, text=True,
                                    timeout=120)
            return status.stdout.count("node_") == 2

        wait_for(two_nodes, 120, "the Ray cluster's second node")
        yield address, joining, marker
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
