"""For every supported family, the patched training forward gives the transformers loss and
gradients without logits; evaluation and generation keep the model's own forward."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ftcore.errors import FtcoreError
from ftcore.testing import build_tiny_model
from ftcore.testing import loss_and_gradients as loss_and_grads
from ftcore_cce.forward import SUPPORTED_MODEL_TYPES, install, uninstall

KIT_FAMILIES = [f for f in SUPPORTED_MODEL_TYPES if f != "gemma3"]
MOE = {"mixtral", "qwen3_moe"}


def tiny_gemma3():
    """Gemma 3 with its vision tower, as AutoModelForCausalLM builds it for model_type gemma3."""
    text = {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 128,
        "sliding_window": 128, "query_pre_attn_scalar": 16, "final_logit_softcapping": 20.0,
    }  # fmt: skip
    vision = {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
    }  # fmt: skip
    config = AutoConfig.for_model(
        "gemma3", text_config=text, vision_config=vision, mm_tokens_per_image=4
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def tiny(family: str):
    if family == "gemma3":
        return tiny_gemma3()
    overrides = {"output_router_logits": True} if family in MOE else {}
    if family == "gemma2":
        overrides["final_logit_softcapping"] = 20.0  # large enough logits to bite
    return build_tiny_model(family, seed=0, tie_word_embeddings=family == "llama", **overrides)


def batch():
    torch.manual_seed(1)
    input_ids = torch.randint(3, 100, (2, 24))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 18:] = 0
    labels = input_ids.clone()
    labels[:, :6] = -100  # the prompt
    labels[1, 18:] = -100  # padding
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("family", SUPPORTED_MODEL_TYPES)
def test_training_loss_and_gradients_equal_the_transformers_ones(family):
    model = tiny(family).train()
    with torch.no_grad():  # scale the head so that soft-capping and the softmax both matter
        model.lm_head.weight.mul_(20)
    inputs = batch()
    plain, plain_grads = loss_and_grads(model, inputs, num_items_in_batch=torch.tensor(31))
    install(model)
    patched, patched_grads = loss_and_grads(model, inputs, num_items_in_batch=torch.tensor(31))
    assert patched.logits is None
    torch.testing.assert_close(patched.loss, plain.loss, rtol=1e-5, atol=1e-6)
    if family in MOE:
        assert patched.aux_loss is not None
        torch.testing.assert_close(patched.aux_loss, plain.aux_loss)
    assert patched_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(patched_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_evaluation_and_generation_keep_the_logits(family):
    model = tiny(family)
    inputs = batch()
    model.eval()
    with torch.no_grad():
        expected = model(**inputs)
        install(model)
        got = model(**inputs)
        torch.testing.assert_close(got.logits, expected.logits)
        torch.testing.assert_close(got.loss, expected.loss)
        generated = model.generate(inputs["input_ids"][:1, :6], max_new_tokens=4, do_sample=False)
    uninstall(model)
    with torch.no_grad():
        again = model.generate(inputs["input_ids"][:1, :6], max_new_tokens=4, do_sample=False)
    assert torch.equal(generated, again)


def test_packed_rows_give_the_transformers_loss():
    model = tiny("llama").train()
    input_ids = torch.randint(3, 100, (1, 30))
    position_ids = torch.cat([torch.arange(12), torch.arange(18)])[None]
    labels = input_ids.clone()
    labels[0, 12] = -100
    inputs = {"input_ids": input_ids, "position_ids": position_ids, "labels": labels}
    plain, _ = loss_and_grads(model, inputs)
    install(model)
    patched, _ = loss_and_grads(model, inputs)
    torch.testing.assert_close(patched.loss, plain.loss, rtol=1e-5, atol=1e-6)


def test_a_lora_lm_head_in_modules_to_save_trains_its_own_copy():
    from peft import LoraConfig, get_peft_model

    base = tiny("qwen2")
    install(base)
    model = get_peft_model(
        base, LoraConfig(target_modules=["q_proj"], modules_to_save=["lm_head"], lora_dropout=0.0)
    ).train()
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(3)
    patched, grads = loss_and_grads(model, batch())
    uninstall(base)
    plain, plain_grads = loss_and_grads(model, batch())
    torch.testing.assert_close(patched.loss, plain.loss, rtol=1e-5, atol=1e-6)
    name = next(n for n in plain_grads if "modules_to_save" in n and "lm_head" in n)
    torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)


def test_a_lora_adapter_on_the_lm_head_is_refused():
    from peft import LoraConfig, get_peft_model

    base = tiny("llama")
    install(base)
    model = get_peft_model(base, LoraConfig(target_modules=["lm_head"])).train()
    with pytest.raises(FtcoreError, match="lora_modules_to_save"):
        model(**batch())


def test_an_unsupported_model_gets_the_supported_list():
    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2, vocab_size=128)
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(FtcoreError, match=r"GPT2LMHeadModel \(model_type gpt2\).*llama, mistral"):
        install(model)


def test_a_model_that_rescales_its_logits_is_refused():
    config = AutoConfig.for_model("cohere", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=2, vocab_size=128,
                                  logit_scale=0.5)  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(FtcoreError, match=r"rescales its logits \(logit_scale=0.5\)"):
        install(model)
