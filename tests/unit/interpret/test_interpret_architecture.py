"""Architecture: counted from the weights, tied weights once, bytes per variant, figures."""
import pytest
from interpret_helpers import KINDS, save_variant

from workbench.views import interpret as views
from workbench.interpret.architecture import architecture, group_of


@pytest.mark.parametrize("kind", KINDS)
def test_counts_equal_num_parameters(load, kind):
    model = load(kind)
    arch = architecture(model)
    assert arch.counted == model.module.num_parameters() == arch.num_parameters
    assert arch.tied  # the tiny models tie their LM head
    groups = set(arch.by_group()["group"])
    assert {"embedding", "attention", "mlp", "final norm"} <= groups and "other" not in groups
    assert "lm head" not in groups  # tied: no tensor of its own
    assert arch.layers == 2 and arch.heads == 4 and arch.hidden_size == 32
    assert sum(t.bytes_fp32 for t in arch.tensors) == 4 * arch.counted
    sizes = arch.variant_bytes()
    assert sizes["fp32"] == 4 * arch.counted
    assert arch.counted < sizes["int8"] < sizes["fp32"]


def test_kv_heads_positions_and_norms_come_from_the_config(load):
    llama, gpt2, gemma = (architecture(load(k)) for k in ("llama", "gpt2", "gemma3"))
    assert (llama.heads, llama.kv_heads, llama.head_dim) == (4, 2, 8)
    assert gemma.kv_heads == 1 and gemma.layer_kinds == ("sliding", "full")
    assert gpt2.positions.startswith("learned") and llama.positions.startswith("rotary")
    assert gpt2.norm == "LayerNorm" and "RMSNorm" in llama.norm


def test_untied_head_is_its_own_component(tiny_store, tiny_model_dirs, tmp_path, load):
    path = save_variant(tiny_model_dirs["llama"], tmp_path / "untied", config={"tie_word_embeddings": False})
    tiny_store.add("tiny-untied", local_dir=path)
    model = load("tiny-untied")
    arch = architecture(model)
    assert not arch.tied
    assert arch.counted == model.module.num_parameters()
    head = arch.by_group().set_index("group").loc["lm head", "params"]
    assert head == arch.vocab_size * arch.hidden_size


def test_group_names():
    assert group_of("model.layers.3.self_attn.q_proj.weight", (8, 8)) == ("attention", 3)
    assert group_of("transformer.h.0.ln_1.weight", (8,)) == ("norms", 0)
    assert group_of("transformer.ln_f.bias", (8,)) == ("final norm", None)
    assert group_of("model.layers.1.mlp.down_proj.weight", (8, 8)) == ("mlp", 1)


@pytest.mark.parametrize("kind", KINDS)
def test_figures(load, kind):
    arch = architecture(load(kind))
    diagram = views.architecture_diagram(arch)
    texts = " ".join(a.text for a in diagram.layout.annotations)
    assert "q / " in texts and "MLP" in texts and "tied" in texts
    tree = views.parameter_treemap(arch)
    root = tree.data[0]
    assert root.values[0] == arch.counted and "counted once" in tree.layout.title.text
