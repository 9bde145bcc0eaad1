"""The asynchronous step's collator drops an attention mask only where it is right padding alone, and sets the
trainer's arguments only when on."""

import pytest
import torch

from loop.model.async_step import CausalRightPadded, right_padded, trainer_arguments


def test_right_padding_is_recognised_and_nothing_else():
    assert right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert right_padded(torch.ones(2, 4, dtype=torch.long))  # no padding at all
    assert not right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding
    assert not right_padded(torch.tensor([[1, 0, 1]]))  # a hole: not the causal mask
    assert not right_padded(torch.tensor([[0, 0, 0]]))  # an empty row
    assert not right_padded(torch.ones(1, 1, 3, 3))  # a 4-D mask is the model's own business


def test_the_collator_drops_only_a_right_padded_mask():
    def inner(batch):
        return dict(batch)

    ids = torch.tensor([[5, 6, 7], [5, 6, 0]])
    wrapped = CausalRightPadded(inner)
    out = wrapped({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])})
    assert set(out) == {"input_ids"} and out["input_ids"] is ids
    left = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1]])}
    assert set(wrapped(left)) == {"input_ids", "attention_mask"}
    with_positions = {"input_ids": ids, "attention_mask": torch.ones(2, 3), "position_ids": torch.arange(3)[None]}
    assert set(wrapped(with_positions)) == {"input_ids", "attention_mask", "position_ids"}


def test_a_strict_collator_refuses_what_causal_attention_alone_would_get_wrong():
    ids = torch.tensor([[5, 6, 7], [5, 6, 0]])
    strict = CausalRightPadded(dict, strict=True)
    assert set(strict({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])})) == {"input_ids"}
    with pytest.raises(ValueError, match="a mask that is not right padding"):
        strict({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1]])})
    with pytest.raises(ValueError, match="position ids"):
        strict({"input_ids": ids, "position_ids": torch.arange(3)[None]})
    assert set(strict({"input_ids": ids})) == {"input_ids"}  # no mask, no positions: causal is all it needs


def test_trainer_arguments_only_when_on():
    assert trainer_arguments(False) == {}
    on = trainer_arguments(True)
    assert on["logging_nan_inf_filter"] is False and on["accelerator_config"] == {"non_blocking": True}


def test_attention_kernels_leave_cudnn_out_only_for_the_asynchronous_step_on_a_card():
    import contextlib

    from loop.model.async_step import attention_kernels

    assert isinstance(attention_kernels(False, torch.device("cuda")), contextlib.nullcontext)
    assert isinstance(attention_kernels(True, torch.device("cpu")), contextlib.nullcontext)
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(True, torch.device("cuda")):  # sets torch's backend switches; no card needed to read them
        assert torch.backends.cuda.cudnn_sdp_enabled() is False
        assert torch.backends.cuda.flash_sdp_enabled() is True
    assert torch.backends.cuda.cudnn_sdp_enabled() is before  # the step's choice ends with the step
