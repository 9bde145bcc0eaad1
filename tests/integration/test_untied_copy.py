"""A tied model's untied copy (loop.model.vllm.backend.save_untied): what a vLLM server the loop starts holds for a
model that ties its LM head to its embeddings, so that new weights can be reloaded in place. It must be the same
function: its own LM head weight equal to the embeddings, its config untied, the same logits."""

import torch
from transformers import AutoModelForCausalLM

from loop.config import build_config
from loop.model.loading import load_base
from loop.model.vllm.backend import output_weight_name, save_untied


def test_the_untied_copy_of_a_tied_model_computes_the_same_logits(tmp_path):
    model = load_base(build_config("smoke").model, torch.device("cpu")).eval()
    assert model.config.tie_word_embeddings
    with torch.no_grad():  # a trained model's head and embeddings move together: change them, tied, before saving
        model.get_input_embeddings().weight.mul_(1.5)
    save_untied(model, tmp_path, model.state_dict())
    copy = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert not copy.config.tie_word_embeddings and output_weight_name(model) == "lm_head.weight"
    assert copy.lm_head.weight.data_ptr() != copy.get_input_embeddings().weight.data_ptr()  # a weight of its own
    assert torch.equal(copy.lm_head.weight, model.get_input_embeddings().weight)
    ids = torch.tensor([[3, 17, 42, 7, 99, 5]])
    with torch.no_grad():
        assert torch.allclose(copy(ids).logits, model(ids).logits, atol=1e-5)
    assert model.config.tie_word_embeddings  # the model in memory is left as it was
