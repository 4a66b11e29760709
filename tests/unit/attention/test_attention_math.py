"""The score breakdown (QKᵀ/√d_k and its softmax) against transformers' eager attention weights."""
import numpy as np
import pytest

from workbench import attention as attn
from workbench.attention.scores import score_breakdown, softmax
from workbench.errors import InvalidInputError
from workbench.runtime.loading import load_model

TEXT = "The capital of France is Paris. Once upon a time"


@pytest.fixture(params=["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def model(request, tiny_store):
    return load_model(request.param, store=tiny_store, device="cpu", attn_implementation="eager")


def test_softmax_of_scores_is_the_eager_row_for_every_head_and_query(model):
    result = attn.attention(model, TEXT)
    L, H, T, _ = result.weights.shape
    worst = 0.0
    for layer in range(L):
        for head in range(H):
            for query in (0, 1, T // 2, T - 1):
                bd = score_breakdown(model, layer, head, query, ids=result.token_ids)
                np.testing.assert_allclose(bd.probabilities, result.weights[layer, head, query], atol=1e-5)
                worst = max(worst, bd.max_abs_diff(result.weights[layer, head, query]))
                assert np.isneginf(bd.scores[query + 1:]).all()  # the future is masked
                assert np.isfinite(bd.scores[query])  # a token always sees itself
    assert worst < 1e-5


def test_scale_kv_head_and_layer_kind(model):
    bd = score_breakdown(model, 1, 3, text=TEXT)
    shape = attn.model_shape(model)
    assert bd.query == len(bd.tokens) - 1 and bd.heads == shape.heads == 4
    if model.id == "tiny-gpt2":
        assert (bd.kv_head, bd.rotary, bd.qk_norm) == (3, False, False)
        assert bd.scale == pytest.approx(8 ** -0.5) and bd.scale_rule == "1/√d_k = 1/√8"
    elif model.id == "tiny-llama":  # 4 query heads share 2 key/value heads
        assert (bd.kv_head, bd.group, bd.rotary, bd.qk_norm) == (1, [2, 3], True, False)
    else:  # Gemma 3: 4 query heads share 1; its own scaling; q/k norms
        assert (bd.kv_head, bd.group, bd.rotary, bd.qk_norm) == (0, [0, 1, 2, 3], True, True)
        cfg = model.config
        assert bd.scale == pytest.approx(cfg.query_pre_attn_scalar ** -0.5)
        assert bd.scale_rule.startswith("1/√query_pre_attn_scalar")


def test_gemma_sliding_layer_hides_keys_outside_the_window(tiny_store):
    model = load_model("tiny-gemma3", store=tiny_store, device="cpu", attn_implementation="eager")
    sliding = score_breakdown(model, 0, 0, text=TEXT)  # layer 0 slides with a window of 4
    full = score_breakdown(model, 1, 0, text=TEXT)
    T = len(sliding.tokens)
    assert (sliding.layer_kind, sliding.window) == ("sliding", 4) and full.window is None
    assert sliding.visible.sum() == 4 and sliding.outside_window == T - 4
    assert sliding.visible[T - 4:].all() and full.visible.all()


def test_rotary_and_scale_matter(model):
    """Drop a step and the check fails: the test can tell a wrong recomputation from a right one."""
    result = attn.attention(model, TEXT)
    bd = score_breakdown(model, 1, 1, ids=result.token_ids)
    row = result.weights[1, 1, -1]
    assert np.abs(softmax(bd.scores / bd.scale) - row).max() > 1e-3  # without the scaling


def test_bad_positions_say_what_exists(model):
    with pytest.raises(InvalidInputError, match="layers 0–1"):
        score_breakdown(model, 5, 0, text=TEXT)
    with pytest.raises(InvalidInputError, match="heads are 0–3"):
        score_breakdown(model, 0, 9, text=TEXT)
    with pytest.raises(InvalidInputError, match="tokens 0–"):
        score_breakdown(model, 0, 0, 999, text=TEXT)
    with pytest.raises(InvalidInputError, match="empty"):
        score_breakdown(model, 0, 0, text="  ")
