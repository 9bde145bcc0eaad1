"""What a killed writer leaves (`.NAME.tmp-PID...`) is swept when a run opens its store, but never a file a live
process may be renaming right now."""

import os
import subprocess
import sys

from loop.store import RunStore


def test_the_leftovers_of_dead_writers_go_and_a_live_writers_stay(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        step = tmp_path / "steps" / "seed-0" / "loss" / f".round-1.tmp-{dead.pid}"
        step.mkdir(parents=True)
        (step / "ledger.parquet").write_bytes(b"half")
        mine = tmp_path / "signals" / f".ifd.parquet.tmp-{os.getpid()}"  # this process writes nothing while opening
        mine.parent.mkdir()
        mine.write_bytes(b"half")
        report = tmp_path / "report" / f".index.html.tmp-{dead.pid}.k2j3"  # reports.files' temp names
        report.parent.mkdir()
        report.write_text("half")
        theirs = tmp_path / "signals" / f".loss.parquet.tmp-{live.pid}"
        theirs.write_bytes(b"being written")
        kept = tmp_path / "signals" / "ifd.parquet"
        kept.write_bytes(b"committed")

        swept = RunStore(tmp_path).sweep_leftovers()
        assert sorted(swept) == sorted([step, mine, report])
        assert not step.exists() and not mine.exists() and not report.exists()
        assert theirs.exists() and kept.read_bytes() == b"committed"
    finally:
        live.kill()
        live.wait()
