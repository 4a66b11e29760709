"""A re-index is built in the store's staging and put in place by the store's own rename
(``workbench.store.install.publish``): a failed build keeps the old index and leaves no file in
the app's folder; a finished one changes only the index and the manifest."""
import errno
import hashlib
import json
from pathlib import Path

import pytest

from workbench.apps import catalog
from workbench.apps.card import parse_app_card
from workbench.apps.catalog import INDEX, app_dir, get_card, reindex_if_changed, save_app
from workbench.apps.index import indexed_sources
from workbench.store import Store

CLUB = "# Club\n\n## Hours\n\nThe boathouse opens at 5:45 in the morning. It is closed every Tuesday.\n"


def _names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_reindex_keeps_the_old_index_until_the_new_one_is_whole(isolated_home, tmp_path, monkeypatch):
    store = Store(isolated_home)
    doc = tmp_path / "club.md"
    doc.write_text(CLUB)
    save_app(store, parse_app_card({"id": "club", "base_model": "tiny-llama"}), [doc])
    folder = app_dir(store, "club")
    layout, old = _names(folder), indexed_sources(folder / INDEX)
    edited = CLUB.replace("Tuesday", "Monday")
    (folder / "knowledge" / "club.md").write_text(edited)

    def broken(path, passages, sources):  # the build dies half-way (a full disk, a kill)
        Path(path).write_bytes(b"half an index")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(catalog, "build_index", broken)
    with pytest.raises(OSError, match="Input/output"):
        reindex_if_changed(store, "club", get_card(store, "club"))
    assert _names(folder) == layout and indexed_sources(folder / INDEX) == old
    assert list(store.staging_dir.iterdir()) == []
    monkeypatch.undo()

    notes = reindex_if_changed(store, "club", get_card(store, "club"))
    assert notes == ["club.md changed since it was indexed; re-indexed it."]
    sha = hashlib.sha256(edited.encode()).hexdigest()
    assert indexed_sources(folder / INDEX) == {"club.md": sha} and _names(folder) == layout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["knowledge/club.md"]["sha256"] == sha and INDEX not in manifest["files"]
    assert list(store.staging_dir.iterdir()) == []
