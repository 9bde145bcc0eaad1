"""loop.model.compiled_layers (`dynamics.nll_compile`): the scorer with compiled decoder layers gives the eager
scorer's NLL, puts the model's own layers back after each call, and a later model of the same architecture reuses
what the first call compiled."""

import pytest
import torch
from torch._dynamo.utils import counters

from loop.model.compiled_layers import compiled_layers
from loop.model.decoder_layers import decoder_layers
from loop.model.scoring import mean_nll
from tests.integration.test_causal_attention import qwen2

pytestmark = pytest.mark.integration


def sequences(n: int, seed: int) -> tuple[list[list[int]], list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(6, 40, (n,), generator=g).tolist()
    return [torch.randint(1, 100, (k,), generator=g).tolist() for k in lengths], [k // 3 for k in lengths]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_compiled_layers_score_the_eager_nll_and_are_undone(asynchronous):
    model = qwen2()
    layers = decoder_layers(model)
    seqs, starts = sequences(24, seed=1)
    eager = mean_nll(model, seqs, starts, pad_id=0, batch_size=8, asynchronous=asynchronous)
    compiled = mean_nll(model, seqs, starts, pad_id=0, batch_size=8, asynchronous=asynchronous,
                        compile_layers=True)
    assert compiled == pytest.approx(eager, abs=1e-5)
    assert all(a is b for a, b in zip(decoder_layers(model), layers))  # the model's own layers, back in place
    assert not isinstance(model.model.layers[0], torch._dynamo.eval_frame.OptimizedModule)


def test_a_later_model_reuses_the_compiled_layers():
    seqs, starts = sequences(16, seed=2)
    torch._dynamo.reset()  # what earlier tests compiled would otherwise serve this one's first call too
    before = counters["stats"]["unique_graphs"]
    mean_nll(qwen2(), seqs, starts, pad_id=0, batch_size=8, compile_layers=True)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > before  # the first call compiled
    torch.manual_seed(5)
    later = qwen2()
    with torch.no_grad():  # another round's weights, the same architecture
        for p in later.parameters():
            p.add_(0.01 * torch.randn_like(p))
    mean_nll(later, seqs, starts, pad_id=0, batch_size=8, compile_layers=True)
    assert counters["stats"]["unique_graphs"] == graphs


def test_layers_compiled_in_place_are_left_as_they_are():
    model = qwen2()
    for layer in decoder_layers(model):
        layer.compile(dynamic=True)  # what train.compile does
    with compiled_layers(model) as compiled_here:
        assert not compiled_here
    with compiled_layers(qwen2(), on=False) as compiled_here:
        assert not compiled_here
