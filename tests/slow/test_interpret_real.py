"""The Inside views on the real default model (SmolLM2-135M-Instruct)."""
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm(real_store):
    from workbench.runtime.loading import load_model

    return load_model("smollm2-135m-instruct", store=real_store, device="cpu", attn_implementation="eager")


def test_logit_lens_ends_on_paris(smollm):
    from workbench.interpret.lens import logit_lens

    result = logit_lens(smollm, "The capital of France is", target=" Paris")
    assert result.top(result.num_layers, -1)[0]["token"] == "␣Paris"
    assert result.target_rank[-1, -1] == 1
    assert 1 <= result.first_top1()[-1] <= result.num_layers


def test_architecture_counts_smollm(smollm):
    from workbench.interpret.architecture import architecture

    arch = architecture(smollm)
    assert arch.counted == smollm.module.num_parameters() and arch.tied
    assert (arch.layers, arch.heads, arch.kv_heads) == (30, 9, 3)


def test_attribution_reports_completeness(smollm):
    from workbench.interpret.attribution import attribute

    r = attribute(smollm, "The capital of France is", steps=27, occlusion=False, tolerance=0, budget_s=600)
    assert r.target_token == "␣Paris" and r.steps == 27
    assert r.completeness_error == pytest.approx(abs(r.integrated.sum() - (r.target_logit - r.baseline_logit)),
                                                 abs=1e-3)
