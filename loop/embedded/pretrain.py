"""Pretrain the embedded default's tiny base model on the synthetic corpus and keep a partly competent snapshot.

    python -m loop.embedded.pretrain --out DIR --seconds S [--device cpu|cuda] [--seed 0]

Builds a ~0.87M-parameter LlamaForCausalLM from config (char vocabulary, 256 positions), trains it
on documents streamed from `task.pretraining_text` (loss on every token, AdamW, linear warmup then
constant lr, so snapshots along the way are comparable), and measures base accuracy at regular
snapshots by sampling (T=0.8, top_p 0.95, prompt "{question}\\nAnswer:") on a fixed 2-5-step mix.
It keeps the snapshot that meets `meets_rule`: accuracy between 0.35 and 0.65, falling with the
number of steps with no cliff, so fine-tuning starts from partial competence and some problems are
solved before they are memorized. The chosen snapshot is saved in fp32 safetensors with the
tokenizer and `pretrain.json` (settings, steps, tokens, seconds, device, date, measured accuracy);
there "seconds" is the training compute time up to the chosen snapshot, evaluations excluded.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from loop.embedded.task import Problem, answer_of, draw_problems, pretraining_text, prompt_text, target_text
from loop.embedded.tokenizer import build_char_tokenizer

EVAL_STEPS = (2, 5)  # the fine-tuning mix the base is judged on (inclusive)
ACC_RANGE = (0.35, 0.65)
RULE = ("accuracy in [0.35, 0.65]; from 2 to 5 steps it falls by >= 0.2, rises by <= 0.1 and drops by <= 0.4 "
        "per step; 5-step accuracy >= 0.05")


def build_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """The embedded base architecture with fresh weights (hidden 128, 4 layers, 4 heads, ff 384, tied)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    return LlamaForCausalLM(config)


class Corpus(torch.utils.data.IterableDataset):
    """Endless batches of pretraining documents: [BOS] text [EOS], right-padded, labels -100 on padding."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, batch_size: int, seed: int):
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.bos, self.eos, self.pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        # ASCII code -> token id: the alphabet is ASCII, so a table lookup replaces the tokenizer call.
        self.table = np.full(128, tokenizer.unk_token_id, dtype=np.int64)
        for tok, i in tokenizer.get_vocab().items():
            if len(tok) == 1:
                self.table[ord(tok)] = i

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0, 7])
        while True:
            docs = [self.table[np.frombuffer(pretraining_text(rng).encode("ascii"), dtype=np.uint8)]
                    for _ in range(self.batch_size)]
            width = max(len(d) for d in docs) + 2
            ids = np.full((self.batch_size, width), self.pad, dtype=np.int64)
            labels = np.full((self.batch_size, width), -100, dtype=np.int64)
            for row, d in enumerate(docs):
                seq = np.concatenate(([self.bos], d, [self.eos]))
                ids[row, :len(seq)] = seq
                labels[row, :len(seq)] = seq
            yield torch.from_numpy(ids), torch.from_numpy(labels)


@torch.no_grad()
def target_nll(model, tokenizer, problems: list[Problem], device: str, batch: int = 256) -> np.ndarray:
    """Mean NLL per target token (target = " " + solution + "\\nDone." + EOS), one value per problem."""
    out = []
    for at in range(0, len(problems), batch):
        chunk = problems[at:at + batch]
        prompts = [tokenizer(prompt_text(p.question)).input_ids for p in chunk]
        targets = [tokenizer(target_text(p.solution), add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
                   for p in chunk]
        width = max(len(a) + len(b) for a, b in zip(prompts, targets))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        for row, (a, b) in enumerate(zip(prompts, targets)):
            ids[row, :len(a) + len(b)] = torch.tensor(a + b)
            labels[row, len(a):len(a) + len(b)] = torch.tensor(b)
        logits = model(input_ids=ids.to(device), attention_mask=(ids != tokenizer.pad_token_id).to(device)).logits
        lp = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels[:, 1:].to(device),
                                               ignore_index=-100, reduction="none")
        mask = (labels[:, 1:] != -100).to(device)
        out.append(((lp * mask).sum(1) / mask.sum(1)).cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def sample_accuracy(model, tokenizer, problems: list[Problem], n_samples: int, device: str,
                    seed: int = 0, batch: int = 1000, max_new_tokens: int = 96) -> np.ndarray:
    """Share of `n_samples` completions (T=0.8, top_p 0.95) whose answer_of equals the answer, per problem."""
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    prompts = [prompt_text(p.question) for p in problems for _ in range(n_samples)]
    answers = [p.answer for p in problems for _ in range(n_samples)]
    correct = []
    for at in range(0, len(prompts), batch):
        enc = tokenizer(prompts[at:at + batch], return_tensors="pt", padding=True).to(device)
        out = model.generate(**enc, do_sample=True, temperature=0.8, top_p=0.95, top_k=0,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
        correct += [answer_of(t) == a for t, a in zip(texts, answers[at:at + batch])]
    return np.array(correct, dtype=float).reshape(len(problems), n_samples).mean(1)


def evaluate(model, tokenizer, problems: list[Problem], n_samples: int, device: str, seed: int = 0) -> dict:
    """Base accuracy overall and by steps, median target NLL and mean style floor on `problems`."""
    model.eval()
    acc = sample_accuracy(model, tokenizer, problems, n_samples, device, seed=seed)
    nll = target_nll(model, tokenizer, problems, device)
    steps = np.array([p.steps for p in problems])
    return {
        "accuracy": round(float(acc.mean()), 4),
        "accuracy_by_steps": {str(k): round(float(acc[steps == k].mean()), 4) for k in sorted(set(steps.tolist()))},
        "median_target_nll": round(float(np.median(nll)), 4),
        "mean_style_floor": round(float(np.mean([p.style_floor for p in problems])), 4),
        "n_problems": len(problems), "n_samples": n_samples,
    }


def meets_rule(metrics: dict) -> bool:
    """Partial, graded competence: accuracy in ACC_RANGE; it falls from 2 to 5 steps by at least 0.2,
    never rises by more than 0.1 (sampling noise) from one step count to the next, never drops by
    more than 0.4 in one step (a cliff), and 5-step problems are solved at least 5% of the time."""
    by = [metrics["accuracy_by_steps"].get(str(k)) for k in range(EVAL_STEPS[0], EVAL_STEPS[1] + 1)]
    if None in by:  # a step count the evaluation set lacks cannot show grading
        return False
    drops = [a - b for a, b in zip(by, by[1:])]
    return (ACC_RANGE[0] <= metrics["accuracy"] <= ACC_RANGE[1] and by[0] - by[-1] >= 0.2
            and min(drops) >= -0.1 and max(drops) <= 0.4 and by[-1] >= 0.05)


def _lr_at(step: int, peak: float, warmup: int) -> float:
    return peak * min(1.0, (step + 1) / warmup)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Pretraining settings; every field is a command-line option of the same name."""

    seconds: float  # wall-time budget of the training loop, snapshot evaluations included
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 128  # documents per step
    lr: float = 1e-3
    warmup: int = 100  # linear warmup steps, then constant lr
    eval_every: int = 100  # steps between snapshots from eval_from on
    eval_from: int = 0  # before this step, snapshots every 100 steps
    n_eval: int = 400  # problems scored at each snapshot
    n_eval_samples: int = 2
    n_final: int = 1000  # problems scored on the chosen snapshot, for the record
    n_final_samples: int = 4
    workers: int = 6  # data-loader processes generating the corpus


def pretrain(out: Path, s: Settings) -> dict:
    """Train for at most `s.seconds` of wall time (snapshot evaluations included, so a run's length is known),
    evaluate snapshots, save the one meeting the rule to `out` with the tokenizer and pretrain.json."""
    t_start = time.time()
    tokenizer = build_char_tokenizer(padding_side="left")
    model = build_model(len(tokenizer), s.seed).to(s.device)
    history, snapshots, train_s = _train_with_snapshots(model, tokenizer, s)
    if not snapshots:
        raise SystemExit(f"no snapshot met the rule in {train_s:.0f} s; history: {json.dumps(history)}")
    # Closest to the middle of the window leaves room both to learn and to lose in fine-tuning.
    chosen, state = min(snapshots, key=lambda snap: (abs(snap[0]["accuracy"] - 0.5), -snap[0]["step"]))
    model.load_state_dict(state)
    final_set = draw_problems(s.n_final, *EVAL_STEPS, seed=2000 + s.seed)
    final = evaluate(model, tokenizer, final_set, s.n_final_samples, s.device, seed=s.seed)
    n_params = sum(p.numel() for p in model.parameters())
    model.to("cpu").float().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = _record(s, n_params, chosen, final, history, wall_seconds=time.time() - t_start)
    (out / "pretrain.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _train_with_snapshots(model, tokenizer, s: Settings) -> tuple[list[dict], list[tuple[dict, dict]], float]:
    """The training loop: (every snapshot's metrics, the rule-meeting snapshots with their weights, the training
    compute seconds, evaluations excluded)."""
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=(0.9, 0.98), weight_decay=0.01)
    loader = torch.utils.data.DataLoader(Corpus(tokenizer, s.batch_size, s.seed), batch_size=None,
                                         num_workers=s.workers, prefetch_factor=4 if s.workers else None,
                                         persistent_workers=s.workers > 0)
    eval_set = draw_problems(s.n_eval, *EVAL_STEPS, seed=1000 + s.seed)
    history, snapshots = [], []
    step, tokens, train_s, losses = 0, 0, 0.0, []
    t_loop = time.time()
    for ids, labels in loader:
        t0 = time.time()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, s.lr, s.warmup)
        model.train()
        loss = model(input_ids=ids.to(s.device), attention_mask=(ids != tokenizer.pad_token_id).to(s.device),
                     labels=labels.to(s.device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        tokens += int((labels != -100).sum())
        train_s += time.time() - t0
        done = time.time() - t_loop >= s.seconds
        # Coarse snapshots throughout, fine ones from `eval_from` on (competence rises steeply, see pretrain.json).
        if (step >= s.eval_from and step % s.eval_every == 0) or step % 100 == 0 or done:
            m = evaluate(model, tokenizer, eval_set, s.n_eval_samples, s.device, seed=s.seed)
            m.update(step=step, tokens=tokens, train_seconds=round(train_s, 1),
                     loss=round(float(np.mean(losses)), 4), meets_rule=meets_rule(m))
            losses = []
            history.append(m)
            print(json.dumps(m), flush=True)
            if m["meets_rule"]:
                snapshots.append((m, copy.deepcopy(model.state_dict())))
            # Past the window for good: after one snapshot inside it, two in a row well above it.
            if snapshots and len(history) >= 2 and all(h["accuracy"] > ACC_RANGE[1] + 0.1 for h in history[-2:]):
                done = True
        if done:
            break
    return history, snapshots, train_s


def _record(s: Settings, n_params: int, chosen: dict, final: dict, history: list[dict], *,
            wall_seconds: float) -> dict:
    """pretrain.json's content: the settings, the chosen snapshot and how it was chosen, its final evaluation."""
    return {
        "params": n_params, "device": torch.cuda.get_device_name() if s.device == "cuda" else s.device,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "steps": chosen["step"], "tokens": chosen["tokens"],
        "seconds": chosen["train_seconds"], "run_wall_seconds": round(wall_seconds, 1),
        "settings": {**dataclasses.asdict(s), "schedule": "linear warmup, constant", "betas": [0.9, 0.98],
                     "weight_decay": 0.01, "grad_clip": 1.0,
                     "corpus": "task.pretraining_text: 50% equation lines, 50% problems of 1-5 steps"},
        "selection": {"rule": RULE, "choice": "the rule-meeting snapshot closest to accuracy 0.5",
                      "eval_problems": f"draw_problems({s.n_eval}, 2, 5, seed={1000 + s.seed})",
                      "eval_samples": s.n_eval_samples},
        "base": {**final, "problems": f"draw_problems({s.n_final}, 2, 5, seed={2000 + s.seed})",
                 "sampling": "T=0.8, top_p=0.95, prompt '{question}\\nAnswer:', graded by answer_of"},
        "snapshot_at_selection": chosen, "history": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    types = {"float": float, "int": int, "str": str}  # field types are strings (postponed annotations)
    for field in dataclasses.fields(Settings):
        required = field.default is dataclasses.MISSING
        parser.add_argument("--" + field.name.replace("_", "-"), type=types[field.type], required=required,
                            default=None if required else field.default,
                            choices=("cpu", "cuda") if field.name == "device" else None)
    args = vars(parser.parse_args())
    out = args.pop("out")
    settings = Settings(**args)
    if settings.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # keep fp32 numerics, so CPU re-measurement matches
    out.mkdir(parents=True, exist_ok=True)
    record = pretrain(out, settings)
    summary = {k: record[k] for k in ("params", "steps", "tokens", "seconds", "device", "base")}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
