"""Saved remote stores (``remotes.json``): mode 0600, add/replace/remove, keys hidden in listings."""
import stat

from workbench.cli import main
from workbench.store import Store, remotes


def test_saved_remotes_are_private_and_resolve_by_name(isolated_home, capsys):
    store = Store(isolated_home)
    remotes.add_remote(store, "class", "http://127.0.0.1:8000/", "wb-secret-key")
    assert stat.S_IMODE(remotes.remotes_path(store).stat().st_mode) == 0o600
    assert remotes.resolve(store, "class") == ("http://127.0.0.1:8000", "wb-secret-key")
    assert remotes.key_for(store, "http://127.0.0.1:8000") == "wb-secret-key"
    assert main(["store", "remotes", "list"]) == 0  # WORKBENCH_HOME is the test's own root
    assert "wb-secret-key" not in capsys.readouterr().out
    assert "wb-secr..." in remotes.describe(remotes.list_remotes(store)[0])
    assert remotes.remove_remote(store, "class") and remotes.list_remotes(store) == []
