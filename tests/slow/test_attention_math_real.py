"""The score breakdown on the real default model (SmolLM2 135M: 9 query heads share 3 KV heads)."""
import numpy as np
import pytest

from workbench import attention as attn
from workbench.attention.scores import score_breakdown
from workbench.runtime.loading import load_model

pytestmark = pytest.mark.slow


def test_softmax_of_scores_equals_eager_attention_on_smollm2(real_store):
    model = load_model("smollm2-135m-instruct", store=real_store, device="cpu", attn_implementation="eager")
    result = attn.attention(model, "The capital of France is Paris.\nThe capital of Italy is")
    T = result.num_tokens
    for layer, head, query in [(0, 0, T - 1), (7, 4, 3), (15, 8, T - 1), (29, 5, T // 2)]:
        bd = score_breakdown(model, layer, head, query, ids=result.token_ids)
        assert bd.d_k == 64 and bd.scale == pytest.approx(1 / 8) and bd.scale_rule == "1/√d_k = 1/√64"
        assert bd.kv_head == head // 3 and len(bd.group) == 3 and bd.rotary and not bd.qk_norm
        assert bd.max_abs_diff(result.weights[layer, head, query]) < 1e-5
        assert np.isneginf(bd.scores[query + 1:]).all()
