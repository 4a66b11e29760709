"""The loaded-model cache is keyed by what is installed: after `store install --force` with other
weights, or a remove and an add under the same id, `load_model` returns the new weights without
anyone clearing the cache."""
import shutil

from workbench.runtime import loading
from workbench.runtime.loading import cached_models, load_model
from workbench.store import Store


def _swap_in(folder, source):
    shutil.rmtree(folder)
    shutil.copytree(source, folder)


def test_a_forced_reinstall_with_other_weights_is_loaded(isolated_home, tiny_model_dirs, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    store = Store(isolated_home)
    store.add("same-id", local_dir=folder)
    try:
        first = load_model("same-id", store=store)
        assert first.config.model_type == "gpt2"
        assert load_model("same-id", store=store) is first  # cached while nothing changed
        _swap_in(folder, tiny_model_dirs["llama"])
        store.install("same-id", force=True)
        second = load_model("same-id", store=Store(isolated_home))  # another Store, as in another page
        assert second.config.model_type == "llama"
        assert first not in cached_models()  # the old weights left the cache
    finally:
        loading.unload()


def test_remove_and_add_under_the_same_id_is_loaded(isolated_home, tiny_model_dirs):
    store = Store(isolated_home)
    store.add("same-id", local_dir=tiny_model_dirs["gpt2"])
    try:
        assert load_model("same-id", store=store).config.model_type == "gpt2"
        store.discard("same-id")
        store.add("same-id", local_dir=tiny_model_dirs["gemma3"])
        assert load_model("same-id", store=store).config.model_type.startswith("gemma3")
    finally:
        loading.unload()
