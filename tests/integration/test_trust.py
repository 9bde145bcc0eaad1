"""What the loop refuses to trust: a resume under other library versions or data (it says what changed and stops
unless told to continue), pickled weights, and secrets in anything a run writes."""

import json
import os
from pathlib import Path

import pytest

from loop.config import build_config
from loop.run.engine import Engine
from loop.store import ResumeMismatchError

pytestmark = pytest.mark.integration


def quick(model_dir, out, *extra):
    return build_config("smoke", overrides=[
        f"model.name_or_path={model_dir}", f"out_dir={out}", "data.n_seeds=6", "data.n_test=6", "data.n_dev=4",
        "sampling.max_new_tokens=16", "torch_threads=1", "workers=1", "selection.budgets=[4]",
        "selection.strategies=[random]", "selection.iid_extra_budgets=[]", *extra])


SHARED = ("selection.strategies=[random, loss]", "selection.budgets=[3, 3]")


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    """One finished run that the tests below copy and then damage or resume (each on its own copy)."""
    out = tmp_path_factory.mktemp("finished")
    Engine(quick(tiny_model_dir, out, *SHARED)).run_all(progress=False)
    return out


def copy_of(finished, tmp_path):
    import shutil

    return Path(shutil.copytree(finished, tmp_path / "run"))


def test_a_resume_under_other_versions_stops_and_says_what_changed(tiny_model_dir, finished, tmp_path):
    tmp_path = copy_of(finished, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["versions"]["torch"] = "0.0.1"  # as if the run had started under another torch
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResumeMismatchError, match=r"versions.torch: '0.0.1' -> "):
        Engine(quick(tiny_model_dir, tmp_path, *SHARED)).run_all(progress=False)
    Engine(quick(tiny_model_dir, tmp_path, *SHARED, "allow_resume_changes=true")).run_all(progress=False)
    kept = json.loads((tmp_path / "manifest.json").read_text())
    assert kept["versions"]["torch"] == "0.0.1"  # the first start's record is kept
    assert any("versions.torch" in c for c in kept["resumes"][-1]["changes"])


def test_pickled_weights_are_refused(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    pickled = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # the pickle format transformers once wrote
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(pickled)
    assert not list(pickled.glob("*.safetensors"))
    from loop.model.loading import load_base

    with pytest.raises(OSError, match="pickled weights only"):
        load_base(quick(pickled, tmp_path / "run").model, device=torch.device("cpu"))


def test_no_secret_reaches_a_file_the_run_writes(tiny_model_dir, tmp_path, monkeypatch):
    secret = "hf_PLANTEDsecret0123456789abcdef"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "TEACHER_KEY"):
        monkeypatch.setenv(name, secret)
    out = tmp_path / "run"
    Engine(quick(tiny_model_dir, out)).run_all(progress=False)
    from reports.run import write_run_report

    write_run_report(out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    leaked = [str(p.relative_to(out)) for p in files if secret.encode() in p.read_bytes()]
    assert not leaked, leaked
    assert os.environ["HF_TOKEN"] == secret  # the environment held it all along


def test_keep_models_last_and_best_prunes_models_only(tiny_model_dir, tmp_path):
    cfg = quick(tiny_model_dir, tmp_path, "save_models=true", "keep_models=last_and_best", "selection.budgets=[2, 2, 2]",
                "data.pool_per_seed=2")
    Engine(cfg).run_all(progress=False)
    chain = sorted((tmp_path / "steps/seed-0/random").glob("round-*"))
    assert len(chain) == 3 and all((f / "eval.parquet").exists() and (f / "step.json").exists() for f in chain)
    kept = [f for f in chain if (f / "model").is_dir()]
    assert chain[-1] in kept and 1 <= len(kept) <= 2
    accuracy = {f: json.loads((f / "step.json").read_text())["accuracy"] for f in chain}
    assert max(chain, key=lambda f: (accuracy[f], f.name)) in kept  # the best round's model stays
    from reports.run import write_run_report

    summary = json.loads((write_run_report(tmp_path).parent / "summary.json").read_text())
    assert summary["config"]["disk_bytes"]["models"] > 0
    assert any(note.startswith("Run store:") for note in summary["notes"])


def test_a_damaged_table_is_named_with_how_to_recover(tiny_model_dir, finished, tmp_path):
    from loop.store import DamagedFileError

    tmp_path = copy_of(finished, tmp_path)
    examples = tmp_path / "data/seed-0/examples.parquet"
    examples.write_bytes(examples.read_bytes()[:40])  # truncated, as a full disk or a bad copy leaves it
    with pytest.raises(DamagedFileError, match=r"examples.parquet cannot be read .*remove it to recompute it"):
        Engine(quick(tiny_model_dir, tmp_path, *SHARED)).run_all(progress=False)


def test_deterministic_mode_repeats_a_run_bit_for_bit(tiny_model_dir, tmp_path):
    import polars as pl
    import torch

    try:
        tables = []
        for name in ("a", "b"):
            out = tmp_path / name
            Engine(quick(tiny_model_dir, out, "deterministic=true", "selection.strategies=[random, loss]")).run_all(
                progress=False)
            tables.append({str(p.relative_to(out)): pl.read_parquet(p) for p in sorted(out.glob("steps/*/*/*/*.parquet"))
                           if p.name != "timings.parquet"})
            assert torch.are_deterministic_algorithms_enabled()
        assert tables[0].keys() == tables[1].keys() and len(tables[0]) > 5
        for key, frame in tables[0].items():
            assert frame.equals(tables[1][key]), key  # ledgers' NLLs to the last bit, selections, evaluations
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_resume_verifies_the_checksums_of_finished_steps(tiny_model_dir, finished, tmp_path):
    import polars as pl

    from loop.store import DamagedFileError

    tmp_path = copy_of(finished, tmp_path)
    cfg = quick(tiny_model_dir, tmp_path, *SHARED)
    record = json.loads((tmp_path / "steps/seed-0/random/round-1/step.json").read_text())
    assert set(record["checksums"]) >= {"selected.parquet", "ledger.parquet", "eval.parquet"}
    Engine(cfg).run_all(progress=False)  # untouched: the resume passes
    selected = tmp_path / "steps/seed-0/random/round-1/selected.parquet"
    pl.DataFrame({"id": ["pool-0000-0"]}).write_parquet(selected)  # a readable file with other content
    with pytest.raises(DamagedFileError, match=r"selected.parquet changed since it was written"):
        Engine(cfg).run_all(progress=False)
