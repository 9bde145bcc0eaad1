"""The embedded base's pretraining script end to end, for a few seconds on CPU: it trains, evaluates snapshots,
keeps the rule-meeting one closest to accuracy 0.5 (the latest on a tie), and saves it loadable, with pretrain.json.
The rule itself is tested on hand-made metrics in tests/unit; here every snapshot is made to meet it, since a
few seconds of training cannot reach the window."""

import json

import pytest
from transformers import AutoModelForCausalLM

import loop.embedded.pretrain as pretraining

pytestmark = pytest.mark.integration


def test_pretraining_saves_the_chosen_snapshot_with_its_record(tmp_path, monkeypatch):
    monkeypatch.setattr(pretraining, "meets_rule", lambda metrics: True)
    settings = pretraining.Settings(seconds=2, workers=0, batch_size=8, n_eval=8, n_eval_samples=1, n_final=8,
                                    n_final_samples=1, eval_every=3)
    record = pretraining.pretrain(tmp_path, settings)
    stored = json.loads((tmp_path / "pretrain.json").read_text())
    assert stored == record and len(record["history"]) >= 2
    best = min(abs(h["accuracy"] - 0.5) for h in record["history"])
    assert record["steps"] == max(h["step"] for h in record["history"] if abs(h["accuracy"] - 0.5) == best)
    assert record["snapshot_at_selection"]["step"] == record["steps"]
    assert record["settings"]["seconds"] == 2 and record["base"]["n_problems"] == 8
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert sum(p.numel() for p in model.parameters()) == record["params"]
