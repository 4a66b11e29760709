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
    r = attribute(model, TEXT, steps=8, baseline="zero")
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
    r = attribute(load("gpt2"), TEXT, steps=64, tolerance=0)
    assert r.completeness_error == pytest.approx(abs(r.integrated.sum() - (r.target_logit - r.baseline_logit)),
                                                 abs=1e-6)
    assert r.completeness_relative < 0.01
    # the path's own endpoints (batched forward) are the model's logits at the input and the baseline
    assert r.path_alphas[0] == 0 and r.path_alphas[-1] == 1 and len(r.path_alphas) == r.steps + 1
    assert r.path_logits[-1] == pytest.approx(r.target_logit, abs=1e-4)
    assert r.path_logits[0] == pytest.approx(r.baseline_logit, abs=1e-4)


@pytest.mark.parametrize("baseline", ["pad", "mean", "zero"])
def test_completeness_converges_as_steps_grow(load, baseline):
    model = load("llama")
    errors = [attribute(model, TEXT, steps=n, baseline=baseline, tolerance=0, occlusion=False).completeness_relative
              for n in (2, 8, 32)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < errors[0] / 20, errors  # zero: 960 %, 320 %, 3.7 %


def test_default_stops_at_tolerance(load):
    r = attribute(load("llama"), TEXT, occlusion=False)
    assert r.baseline == "pad" and r.steps < r.steps_asked == 128
    assert r.completeness_relative <= 0.01


def sharp(delta_weights, centre=0.3, slope=60.0):
    """A path whose logit is a steep step at ``centre``: f = tanh(slope (α - centre)); the
    integrand splits f' over the tokens by ``delta_weights``."""
    w = np.asarray(delta_weights, dtype=float)

    def evaluate(alphas):
        alphas = np.asarray(alphas, dtype=float)
        f = np.tanh(slope * (alphas - centre))
        return f, (slope / np.cosh(slope * (alphas - centre)) ** 2)[:, None] * w[None]

    return evaluate, float(np.tanh(slope * (1 - centre)) - np.tanh(-slope * centre))


def test_integrate_puts_points_where_the_path_bends():
    evaluate, expected = sharp([0.25, 0.75])
    uniform = integrate(evaluate, 32, 0.0, 60, first=32)
    adaptive = integrate(evaluate, 32, 0.0, 60)
    err = lambda r: abs(r.scores.sum() - expected)  # noqa: E731
    assert uniform.steps == adaptive.steps == 32 and adaptive.stop == "steps"
    assert err(adaptive) < err(uniform) / 10
    assert err(adaptive) == pytest.approx(abs(adaptive.local.sum()), abs=1e-12)  # the error it reports is exact
    np.testing.assert_allclose(adaptive.scores / adaptive.scores.sum(), [0.25, 0.75])
    assert np.all(np.diff(adaptive.alphas) > 0) and adaptive.f[0] == evaluate([0.0])[0][0]
    near = np.abs(adaptive.alphas - 0.3) < 0.1
    assert near.sum() > len(adaptive.alphas) / 2  # most nodes sit on the step
    loose = integrate(evaluate, 64, 0.01, 60)
    assert loose.stop == "tolerance" and err(loose) <= 0.01 * abs(expected) and loose.steps < 64
    timed = integrate(evaluate, 64, 0.0, 0.0)
    assert timed.stop == "time" and timed.steps == 8


def test_budgets_reduce_and_say_so(load):
    model = load("llama")
    r = attribute(model, TEXT, steps=64, budget_s=1e-6, tolerance=0)
    assert r.steps == 8 and r.steps_asked == 64  # the first equal intervals always run
    assert any("stopped at 8 steps of the 64 asked" in n for n in r.notes)
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
