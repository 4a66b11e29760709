"""Pull the real SmolLM2 from one store root (served by the real store-only server on loopback)
into another, and generate " Paris"."""
from __future__ import annotations

from workbench.serve.keys import KeyStore
from workbench.store import Store


def test_pull_real_smollm2_and_generate_paris(real_store, tmp_path):
    from workbench.serve.server import ServerThread, build_app

    app, registry = build_app(real_store, store_only=True)
    keys = KeyStore(real_store.home)
    key = keys.create(f"slow-pull-{tmp_path.name}"[:60], "pull")
    try:
        with ServerThread(app, host="127.0.0.1") as server:
            remote = Store(tmp_path / "pulled-home", url=server.url, api_key=key)
            model = remote.download_model("smollm2-135m-instruct")
            assert remote.local.verify("smollm2-135m-instruct").ok
            out = model.generate("The capital of France is", max_new_tokens=3, temperature=0)
        assert out.text.startswith(" Paris")
    finally:
        keys.revoke(f"slow-pull-{tmp_path.name}"[:60])
        registry.close()
