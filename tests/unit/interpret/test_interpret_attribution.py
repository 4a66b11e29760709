"""Attribution: gradient × input and occlusion equal a manual computation, integrated gradients
are complete up to the reported error, budgets reduce and say so, HTML is escaped."""
import numpy as np
import pytest
import torch
from interpret_helpers import KINDS

from workbench.errors import InvalidInputError
from workbench.views import interpret as views
from workbench.interpret.attribution import attribute, integrate, step_bytes

TEXT = "The capital of France is"


def target_logit(model, embeds, target):
    return model.module(inputs_embeds=embeds[None], use_cache=False).logits[0, -1, target]


@pytest.mark.parametrize("kind", KINDS)
def test_matches_manual_gradients_and_occlusion(load, kind):
    model = load(kind)
    r = attribute(model, TEXT, steps=8)
    ids = torch.tensor([r.token_ids])
    with torch.no_grad():
        logits = model.module(input_ids=ids).logits[0, -1]
    assert r.target_id == int(logits.argmax())
    assert r.target_logit == pytest.approx(float(logits[r.target_id]), abs=1e-5)
    x = model.module.get_input_embeddings()(ids)[0].detach().requires_grad_(True)
    (g,) = torch.autograd.grad(target_logit(model, x, r.target_id), x)
    np.testing.assert_allclose(r.grad_x_input, (g * x).sum(-1).detach().numpy(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        occluded = x.detach().clone()
        occluded[2] = 0
        drop = r.target_logit - float(target_logit(model, occluded, r.target_id))
    assert r.occlusion_logit[2] == pytest.approx(drop, abs=1e-5)
    assert r.integrated[0] == 0 and r.occlusion_logit[0] == 0  # the first token stays in the baseline
    assert all(p.requires_grad for p in model.module.parameters())  # weights restored


def test_integrated_gradients_completeness(load):
    r = attribute(load("gpt2"), TEXT, steps=27, tolerance=0)
    assert r.completeness_error == pytest.approx(abs(r.integrated.sum() - (r.target_logit - r.baseline_logit)),
                                                 abs=1e-6)
    assert r.completeness_relative < 0.01
    # the error shrinks with more steps on a smooth path (GPT-2: positions keep the path off zero)
    coarse = attribute(load("gpt2"), TEXT, steps=3, tolerance=0)
    assert coarse.completeness_error >= r.completeness_error


def test_integrate_refines_until_complete():
    """f(z) = Σ z³ from a zero baseline: IG must sum to f(x); the midpoint rule's error shrinks 9× a level."""
    delta = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    calls = []

    def gradients(alphas):
        calls.append(len(alphas))
        return sum(3 * (float(a) * delta) ** 2 for a in alphas)

    expected = float((delta ** 3).sum())
    scores, n, why = integrate(gradients, delta, expected, steps=64, tolerance=0.0, budget_s=60)
    assert (n, why) == (27, "steps") and calls == [3, 6, 18]  # each level adds the new midpoints only
    assert abs(float(scores.sum()) - expected) < 1e-3 * abs(expected)
    _, n, why = integrate(gradients, delta, expected, steps=64, tolerance=0.01, budget_s=60)
    assert why == "tolerance" and n < 64
    _, n, why = integrate(gradients, delta, expected, steps=20, tolerance=0.0, budget_s=60)
    assert (n, why) == (9, "steps")


def test_budgets_reduce_and_say_so(load):
    model = load("llama")
    r = attribute(model, TEXT, steps=64, budget_s=1e-6, tolerance=0)
    assert r.steps == 3 and r.steps_asked == 64
    assert any("stopped at 3 steps of the 64 asked" in n for n in r.notes)
    assert r.occlusion_span == 0 and any("Occlusion was skipped" in n for n in r.notes)
    assert not r.occlusion_logit.any()
    per = step_bytes(model, len(r.token_ids))
    r = attribute(model, TEXT, steps=8, budget_bytes=3 * per)
    assert r.batch == 3 and any("3 path points at a time" in n for n in r.notes)
    with pytest.raises(InvalidInputError, match="shorten the text"):
        attribute(model, TEXT, budget_bytes=per // 2)
    r = attribute(model, "word " * 60, max_tokens=16, steps=4, budget_s=600)
    assert len(r.tokens) == 16 and "last 16" in r.notes[0]
    assert r.occlusion_span == 1 and r.occlusion_logit[1:].any()  # within the budget: each token alone


def test_bad_input(load):
    model = load("llama")
    with pytest.raises(InvalidInputError, match="empty"):
        attribute(model, "")
    with pytest.raises(InvalidInputError, match="baseline"):
        attribute(model, TEXT, baseline="noise")
    with pytest.raises(InvalidInputError, match="steps"):
        attribute(model, TEXT, steps=0)
    r = attribute(model, TEXT, baseline="pad", steps=4, target=" Paris")
    assert r.target_token == "␣Paris"


def test_html_escapes_markup_tokens(load):
    r = attribute(load("llama"), "Hi </script><script>alert(1)</script> 日本語 🙂", steps=4)
    page = views.attribution_html(r)
    assert "<script>" not in page and "&lt;" in page
    assert page.count('class="wb-tok"') == len(r.tokens)
    fig = views.attribution_figure(r)
    assert "<script>" not in str(fig.to_plotly_json()["data"][0]["x"])
