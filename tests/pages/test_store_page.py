"""Store page through streamlit.testing."""


def test_lists_every_card_with_status(open_page):
    at = open_page("pages/store.py")
    text = " ".join(m.value for m in at.markdown)
    for name in ("SmolLM2 135M Instruct", "Gemma 3 270M", "GPT-2 (124M)", "Tiny gpt2"):
        assert name in text
    assert "needs network" in text and "installed" in text


def test_remove_of_a_users_model_takes_its_card_too(open_page, tiny_store):
    at = open_page("pages/store.py")
    at.button(key="remove_tiny-gpt2").click().run()
    assert not at.exception
    tiny_store.catalog.reload()
    assert "tiny-gpt2" not in tiny_store.catalog
    assert not (tiny_store.models_dir / "tiny-gpt2").exists()
    assert not any(getattr(b, "key", None) == "install_tiny-gpt2" for b in at.button)


def test_damaged_entry_is_flagged_and_verify_names_the_file(open_page, tiny_store):
    (tiny_store.path("tiny-gemma3") / "model.safetensors").unlink()
    at = open_page("pages/store.py")
    assert any("model.safetensors is missing" in w.value for w in at.warning)
    at.button(key="verify_tiny-gemma3").click().run()
    assert any("missing" in e.value for e in at.error)


def test_add_custom_model_with_bad_path_explains(open_page, tmp_path):
    at = open_page("pages/store.py")
    at.text_input(key="add_id").set_value("mine")
    at.text_input(key="add_location").set_value(str(tmp_path / "nowhere"))
    at.button[-1].click().run()  # the form's submit button
    assert not at.exception
    assert any("config.json" in e.value for e in at.error)


def test_add_custom_model_from_a_folder(open_page, tiny_model_dirs, tiny_store):
    at = open_page("pages/store.py")
    at.text_input(key="add_id").set_value("my-gpt2")
    at.text_input(key="add_location").set_value(str(tiny_model_dirs["gpt2"]))
    at.button[-1].click().run()
    assert not at.exception
    tiny_store.catalog.reload()
    assert tiny_store.is_installed("my-gpt2")


def _gguf_card(store, model_id: str, path, sha: str) -> None:
    (store.cards_dir / f"{model_id}.toml").write_text(
        f'id = "{model_id}"\nname = "{model_id}"\nfamily = "llama"\narchitecture = "LlamaForCausalLM"\n'
        'parameters = 1\nlayers = 1\nheads = 1\ncontext_length = 8\nlicense = "MIT"\n'
        'description = "d"\ncapabilities = ["generate"]\n\n'
        f'[[sources]]\nkind = "local-gguf"\npath = "{path}"\nsha256 = "{sha}"\n'
    )


def test_card_with_wrong_hash_or_missing_file_fails_cleanly(open_page, tiny_store, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)
    _gguf_card(tiny_store, "wrong-hash", fake, "0" * 64)
    _gguf_card(tiny_store, "missing-file", tmp_path / "gone.gguf", "0" * 64)
    at = open_page("pages/store.py")
    at.button(key="install_wrong-hash").click().run()
    assert any("sha256" in e.value and "Install again" in e.value for e in at.error)
    # a card whose file is gone is no install candidate: it says so, with the fix
    assert any("gone.gguf" in w.value and "workbench store remove missing-file" in w.value for w in at.warning)
    assert not any(getattr(b, "key", None) == "install_missing-file" for b in at.button)
    assert not at.exception
    assert not (tiny_store.models_dir / "wrong-hash").exists()
    assert not (tiny_store.models_dir / "missing-file").exists()
    assert list(tiny_store.staging_dir.iterdir()) == []


def test_installed_card_shows_its_architecture_from_the_weights(open_page, tiny_store):
    at = open_page("pages/store.py")
    assert not at.get("plotly_chart")  # nothing is loaded until asked
    at.button(key="arch_tiny-llama").click().run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the block diagram and the parameter treemap
    assert "parameters" in charts[0].proto.spec
