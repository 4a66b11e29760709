"""Plotly builders: shapes, shared colour scale, hover text, reductions noted."""
import numpy as np
import pytest

from workbench import attention as attn
from workbench.views import attention as views
from workbench.runtime.loading import load_model


@pytest.fixture
def result(tiny_store):
    model = load_model("tiny-gemma3", store=tiny_store, device="cpu", attn_implementation="eager")
    return attn.attention(model, "The capital of France is Paris. The capital of")


def test_grid_has_one_heatmap_per_layer_and_head_on_one_colour_scale(result):
    fig = views.heatmap_grid(result, layers=[0, 1])
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2 * result.num_heads
    assert {t.coloraxis for t in heatmaps} == {"coloraxis"}
    assert fig.layout.coloraxis.cmax == pytest.approx(float(result.weights[:, :, 1:].max()))
    assert "query %{y}" in heatmaps[0].hovertemplate and "key %{x}" in heatmaps[0].hovertemplate
    assert heatmaps[0].y[1] == f"1 {result.tokens[1]}"
    texts = [a.text for a in fig.layout.annotations]
    assert "L0 sliding" in texts and "L1 full" in texts and "head 3" in texts
    np.testing.assert_array_equal(np.array(heatmaps[5].z), result.head(1, 1))


def test_zoomed_head_has_token_labels(result):
    fig = views.head_heatmap(result, 1, 2)
    assert list(fig.data[0].x) == attn.position_labels(result.tokens)
    assert "sliding" not in fig.layout.title.text and "full" in fig.layout.title.text


def test_long_maps_are_reduced_and_say_so():
    T = 512
    w = np.tril(np.ones((T, T), np.float32))
    w /= w.sum(-1, keepdims=True)
    r = attn.AttentionResult("m", list(range(T)), [f"w{i}" for i in range(T)], np.stack([[w, w]]),
                             (0,), ("full",), None, 2)
    grid = views.heatmap_grid(r)
    assert np.array(grid.data[0].z).shape == (views.GRID_MAX_TOKENS,) * 2
    assert "512 tokens drawn as" in grid.layout.meta["note"]
    zoom = views.head_heatmap(r, 0, 1)
    assert zoom.data[0].type == "scattergl" and len(zoom.data[0].x) <= T * views.ZOOM_TOP_K
    assert "strongest keys" in zoom.layout.title.text
    assert "blocks" in views.rollout_heatmap(r).layout.meta["note"]


def test_summary_figures(result):
    stats = attn.head_stats(result)
    for metric in attn.HeadStats.METRICS:
        fig = views.head_stats_figure(stats, metric)
        assert np.array(fig.data[0].z).shape == (2, result.num_heads)
    mean = views.mean_heatmap(result, 1)
    np.testing.assert_allclose(np.array(mean.data[0].z), result.weights[1].mean(0), atol=1e-6)
    roll = views.rollout_heatmap(result)
    np.testing.assert_allclose(np.array(roll.data[0].z), attn.rollout(result.weights), atol=1e-6)


def test_generation_step_view(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu", attn_implementation="eager")
    _, gen = attn.generate_with_attention(model, "Once upon", max_new_tokens=4, stop_at_eos=False)
    data = views.generation_step_data(gen, 2, 1)
    assert data["matrix"].shape == (4, gen.prompt_len + 2)
    assert data["predicted"] == gen.generated[2]
    fig = views.generation_step_figure(gen, 2, 1)
    assert len(fig.data[0].y) == 4 and "Step 3/4" in fig.layout.title.text
