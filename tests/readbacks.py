"""Counting the ops that read a tensor's value back to the host, for the tests of the asynchronous step and the
asynchronous NLL scorer (on a CPU these ops run the same as on a card, where each one makes the host wait)."""

import traceback

from torch.utils._python_dispatch import TorchDispatchMode


class ReadBacks(TorchDispatchMode):
    """Counts the ops that read a tensor's value back to the host (`.item()`, `bool(tensor)`, `nonzero`), leaving
    out the CPU optimizer's own reads of its step counter (a fused GPU optimizer keeps it on the device) and the
    data loader's (the sampler and the collator work on host tensors, before the batch is uploaded)."""

    READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default"}

    def __init__(self):
        super().__init__()
        self.count = 0
        self.where: list[str] = []  # the innermost file of each read's stack outside torch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in self.READS:
            stack = traceback.extract_stack()
            if not any("torch/optim" in f.filename or "torch/utils/data" in f.filename for f in stack):
                self.count += 1
                self.where.append(next((f.filename for f in reversed(stack) if "/torch/" not in f.filename
                                        and "readbacks" not in f.filename), "?"))
        return func(*args, **(kwargs or {}))
