"""Head ablation hooks against zeroing the same heads in a copy of the weights."""
import copy
import threading

import pytest
import torch

from workbench.attention import ablation
from workbench.attention import attention_modules
from workbench.errors import InvalidInputError
from workbench.runtime.loading import load_model

TEXT = "The capital of France is Paris. Once upon"


@pytest.fixture(params=["gpt2", "llama", "gemma3"])
def model(request, tiny_store):
    return load_model(f"tiny-{request.param}", store=tiny_store, device="cpu", attn_implementation="eager")


def logits(module, ids):
    with torch.no_grad():
        return module(torch.tensor([ids])).logits[0, -1]


def zeroed_copy(model, heads):
    """The reference: the same model with the heads' columns of the output projection zeroed."""
    module = copy.deepcopy(model.module)
    for layer, head in heads:
        attn = attention_modules(module)[layer]
        hd = attn.head_dim
        proj = getattr(attn, "o_proj", None) or attn.c_proj
        with torch.no_grad():
            if isinstance(proj, torch.nn.Linear):  # (out, in)
                proj.weight[:, head * hd:(head + 1) * hd] = 0
            else:  # GPT-2 Conv1D: (in, out)
                proj.weight[head * hd:(head + 1) * hd, :] = 0
    return module


def test_hooks_equal_zeroed_weights(model):
    heads = [(0, 1), (1, 0), (1, 3)]
    ids = model.tokenizer(TEXT)["input_ids"]
    base = logits(model.module, ids)
    with ablation.ablate(model, heads):
        hooked = logits(model.module, ids)
    ref = logits(zeroed_copy(model, heads), ids)
    torch.testing.assert_close(hooked, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(hooked, base, atol=1e-4)
    torch.testing.assert_close(logits(model.module, ids), base)  # hooks gone


def test_comparison_reports_both_distributions(model):
    heads = [(0, 0), (0, 1), (0, 2), (0, 3)]
    cmp = ablation.compare_next_token(model, TEXT, heads, k=5)
    ids = model.tokenizer(TEXT)["input_ids"]
    p_base = torch.softmax(logits(model.module, ids), -1)
    p_after = torch.softmax(logits(zeroed_copy(model, heads), ids), -1)
    assert [p.id for p in cmp.baseline] == torch.topk(p_base, 5).indices.tolist()
    assert [p.id for p in cmp.ablated] == torch.topk(p_after, 5).indices.tolist()
    for _tok, i, before, after in cmp.rows:
        assert before == pytest.approx(float(p_base[i]), abs=1e-6)
        assert after == pytest.approx(float(p_after[i]), abs=1e-6)


def test_regenerate_with_heads_off(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu", attn_implementation="eager")
    heads = [(layer, h) for layer in range(2) for h in range(4)]
    base, ablated = ablation.regenerate(model, "Once upon a time", heads, max_new_tokens=8, stop_at_eos=False)
    again = model.generate("Once upon a time", max_new_tokens=8, stop_at_eos=False)
    assert base.token_ids == again.token_ids
    ref_module = zeroed_copy(model, heads)
    ids = list(ablated.prompt_ids)
    for token in ablated.token_ids:  # greedy on the zeroed copy gives the same tokens
        assert int(torch.argmax(logits(ref_module, ids))) == token
        ids.append(token)


def test_other_threads_are_not_ablated(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    ids = model.tokenizer(TEXT)["input_ids"]
    base = logits(model.module, ids)
    seen = {}
    with ablation.ablate(model, [(0, 0), (1, 1)]):
        t = threading.Thread(target=lambda: seen.setdefault("x", logits(model.module, ids)))
        t.start()
        t.join()
    torch.testing.assert_close(seen["x"], base)


def test_bad_heads_say_what_exists(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    with pytest.raises(InvalidInputError, match="layers 0–1 and heads 0–3"):
        ablation.compare_next_token(model, TEXT, [(5, 0)])
    assert ablation.parse_heads("3.1, 5:0") == [(3, 1), (5, 0)]
    with pytest.raises(InvalidInputError, match="layer.head"):
        ablation.parse_heads("three")
