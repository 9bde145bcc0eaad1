"""One GPU per worker process: leases are exclusive across processes and end with their process; numerics
per device; out-of-memory backoff."""

import multiprocessing as mp

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from loop.config import ModelConfig, TrainConfig, build_config
from loop.model import devices
from loop.model.devices import NoFreeGPUError, check_workers, claim_gpu
from loop.model.oom import halve_on_oom, shrink_on_oom
from loop.model.precision import resolve_precision

pytestmark = pytest.mark.integration


def _claim_and_report(lock_dir, cards, queue, hold):
    try:
        queue.put(claim_gpu(cards, lock_dir))
    except NoFreeGPUError as err:
        queue.put(f"refused: {err}")
    hold.wait(30)


def test_each_process_leases_a_card_of_its_own(tmp_path):
    ctx = mp.get_context("spawn")
    queue, hold = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claim_and_report, args=(tmp_path, ["0", "1"], queue, hold)) for _ in range(3)]
    for p in procs:
        p.start()
    got = sorted(queue.get(timeout=60) for _ in procs)
    assert got[:2] == ["0", "1"] and got[2].startswith("refused") and "share_gpus" in got[2]
    hold.set()
    for p in procs:
        p.join(30)
    # The leases ended with their processes: a new process gets a card again.
    queue, hold = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_claim_and_report, args=(tmp_path, ["0", "1"], queue, hold))
    p.start()
    assert queue.get(timeout=60) == "0"
    hold.set()
    p.join(30)


def test_more_workers_than_gpus_is_refused_unless_shared(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # the cards a process may use, as CUDA itself reads them
    assert devices.visible_gpus() == ["3"]
    with pytest.raises(ValueError, match="workers=2 but 1 GPU"):
        check_workers(2, "auto", share_gpus=False)
    check_workers(2, "auto", share_gpus=True)
    check_workers(2, "cpu", share_gpus=False)
    check_workers(1, "auto", share_gpus=False)
    # Where they share, every worker takes the first card: each plans its training memory for a part of it.
    assert devices.workers_per_card(8, share_gpus=True) == 8 and devices.workers_per_card(8, share_gpus=False) == 1
    assert devices.workers_per_card(0, share_gpus=True) == 1


def test_precision_per_device():
    cpu = resolve_precision(ModelConfig(), TrainConfig(), torch.device("cpu"))
    assert cpu.weights == torch.float32 and cpu.compute is None and cpu.name == "fp32"
    lora = resolve_precision(ModelConfig(lora={"r": 4}), TrainConfig(precision="bf16"), torch.device("cpu"))
    assert lora.weights == torch.float32 and lora.compute == torch.bfloat16  # a frozen CPU base stays fp32
    frozen_bf16 = resolve_precision(ModelConfig(lora={"r": 4}, dtype="bfloat16"), TrainConfig(), torch.device("cpu"))
    assert frozen_bf16.weights == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision(ModelConfig(), TrainConfig(precision="fp16"), torch.device("cpu"))


def test_pure_bf16_full_fine_tuning_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="model.dtype 'bfloat16' with full fine-tuning"):
        build_config("gsm8k", overrides=["model.dtype=bfloat16"])
    assert build_config("gsm8k", overrides=["model.dtype=bfloat16", "model.lora={r: 8}"]).model.dtype == "bfloat16"


def test_out_of_memory_halves_the_batch_and_the_result_is_complete(caplog):
    out = np.zeros(37)

    def run(part):
        if len(part) > 5:  # a batch of more than 5 items does not fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        out[part] = part + 1

    with caplog.at_level("WARNING"):
        halve_on_oom(run, np.arange(37), what="scoring")
    assert (out == np.arange(1, 38)).all()
    assert "out of memory on a batch of 37" in caplog.text

    def never(part):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        halve_on_oom(never, np.arange(4), what="scoring")

    def other(part):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape"):
        halve_on_oom(other, np.arange(4), what="scoring")
    assert shrink_on_oom(lambda size: size if size <= 12 else (_ for _ in ()).throw(
        torch.OutOfMemoryError("out of memory")), 100, what="sampling") == 12
