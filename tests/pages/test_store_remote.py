"""The Store page's remote stores against a real store-only server on loopback (uvicorn in a
thread, its own store root): add a remote, browse its catalog, pull with progress, push, errors."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from workbench.serve.keys import KeyStore
from workbench.store import Store
from workbench.store import background as rv
from workbench.testing import ROOT

WAIT_S = 60


@pytest.fixture
def served(tmp_path, tiny_model_dirs):
    """A second store (tiny-gpt2 only) served by ``build_app(store_only=True)`` on 127.0.0.1."""
    from workbench.serve.server import ServerThread, build_app

    there = Store(tmp_path / "remote-home")
    there.add("tiny-gpt2", local_dir=tiny_model_dirs["gpt2"], name="Tiny gpt2")
    app, registry = build_app(there, store_only=True)
    server = ServerThread(app, host="127.0.0.1").start()
    keys = KeyStore(there.home)
    server.store = there
    server.keys = {"team": keys.create("team", "pull,publish"), "gen": keys.create("gen")}
    yield server
    server.stop()
    registry.close()


@pytest.fixture
def page(isolated_home):
    """``page()``: a fresh session (AppTest) of the app on the Store page, over an empty local store."""
    import streamlit as st

    st.cache_resource.clear()

    def _open() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/store.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    yield _open
    st.cache_resource.clear()


def add_remote(at: AppTest, name: str, url: str, key: str) -> AppTest:
    at.text_input(key="remote_name").set_value(name)
    at.text_input(key="remote_url").set_value(url)
    at.text_input(key="remote_key").set_value(key)
    next(b for b in at.button if b.label == "Save remote").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [s.value for s in at.success] + [e.value for e in at.error]
    parts += [o for s in at.selectbox for o in s.options]
    return "\n".join(parts)


def only_transfer(home) -> rv.Transfer:
    (job,) = rv.transfers(Store(home))
    assert job.wait(WAIT_S), "the transfer did not end"
    return job


def test_add_a_remote_saves_it_shows_its_catalog_and_never_the_whole_key(page, served, isolated_home):
    key = served.keys["team"]
    at = add_remote(page(), "class", served.url, key)
    saved = json.loads((isolated_home / "remotes.json").read_text())
    assert saved == [{"name": "class", "url": served.url, "key": key}]
    assert (isolated_home / "remotes.json").stat().st_mode & 0o777 == 0o600
    text = shown_text(at)
    assert "tiny-gpt2" in text and "not here" in text
    assert key[:7] in text and key not in text  # the key only by its first characters
    assert at.button(key="pull_model_tiny-gpt2").label == "Pull"


def test_pull_runs_in_the_background_and_a_new_session_sees_it_installed(page, served, isolated_home):
    at = add_remote(page(), "class", served.url, served.keys["team"])
    at.button(key="pull_model_tiny-gpt2").click().run()
    assert not at.exception
    job = only_transfer(isolated_home)
    assert job.error is None, job.error
    assert Store(isolated_home).is_installed("tiny-gpt2")
    assert Store(isolated_home).manifest("tiny-gpt2")["origin"]["url"] == served.url
    fresh = page()  # a reload: a new session finds the finished pull in the registry
    assert any("Pulled model 'tiny-gpt2'" in s.value for s in fresh.success)
    assert "here" in shown_text(fresh) and fresh.button(key="pull_model_tiny-gpt2").disabled
    fresh.button(key=next(b.key for b in fresh.button if (b.key or "").startswith("dismiss_"))).click().run()
    assert rv.transfers(Store(isolated_home)) == []


@pytest.fixture
def held_pull(monkeypatch):
    """``RemoteStore.pull`` that reports half-way, sets ``halfway``, then waits for ``release.set()``."""
    import threading

    from workbench.store.transfer import RemoteStore

    release, halfway, calls = threading.Event(), threading.Event(), []

    def pull(self, item_id, kind=None, progress=None, force=False):
        calls.append(item_id)
        progress(0.5, f"pulling {item_id}: 1 of 2 files")
        halfway.set()
        assert release.wait(WAIT_S)

    monkeypatch.setattr(RemoteStore, "pull", pull)
    yield release, halfway, calls
    release.set()


def test_a_running_pull_shows_live_progress_and_is_never_started_twice(page, served, isolated_home, held_pull):
    release, halfway, calls = held_pull
    at = add_remote(page(), "class", served.url, served.keys["team"])
    at.button(key="pull_model_tiny-gpt2").click().run()
    assert len(at.get("progress")) == 1  # the run the click started shows the pull (maybe still "starting…")
    assert halfway.wait(WAIT_S)
    at.run()  # a later run (the page's own refresh, a reload) shows where the pull has got to
    (bar,) = at.get("progress")
    assert "1 of 2 files" in bar.proto.text and bar.proto.value == 50
    assert at.button(key="pull_model_tiny-gpt2").disabled  # no second pull of one id from the page
    again = rv.start_pull(Store(isolated_home), served.url, served.keys["team"], "tiny-gpt2", "model")
    assert again is rv.transfers(Store(isolated_home))[0] and calls == ["tiny-gpt2"]
    release.set()
    assert again.wait(WAIT_S) and again.error is None
    at.run()
    assert any("Pulled model 'tiny-gpt2'" in s.value for s in at.success) and not at.get("progress")


@pytest.mark.parametrize("which, expected", [
    ("wrong", "refused the key"),
    ("gen", "'pull' scope"),
])
def test_a_wrong_key_or_scope_shows_the_fix_and_the_page_keeps_running(page, served, which, expected):
    key = "wb-not-a-key" if which == "wrong" else served.keys[which]
    at = add_remote(page(), "class", served.url, key)
    (err,) = [e.value for e in at.error]
    assert expected in err and "workbench keys create NAME --scope pull" in err
    assert any("add the remote again as **class**" in c.value for c in at.caption)  # the fix on this page
    assert at.subheader[-1].value == "Add your own model"  # the rest of the page still rendered


def test_a_server_that_is_down_says_so(page, tmp_path):
    at = add_remote(page(), "gone", "http://127.0.0.1:9", "wb-x")
    assert any("Cannot reach the store at http://127.0.0.1:9" in e.value for e in at.error)


def test_push_refuses_a_clash_then_takes_an_as_new_id(page, served, isolated_home, tiny_model_dirs):
    Store(isolated_home).add("tiny-gpt2", local_dir=tiny_model_dirs["llama"])  # another model, same id
    at = add_remote(page(), "class", served.url, served.keys["team"])
    assert "another version there" in shown_text(at)
    at.selectbox(key="push_pick").set_value(("model", "tiny-gpt2"))
    next(b for b in at.button if b.label.startswith("Push to")).click().run()
    job = only_transfer(isolated_home)
    assert "--as NEW_ID" in str(job.error)
    rv.dismiss(job)
    at.run()
    at.text_input(key="push_as").set_value("tiny-gpt2-mine")
    next(b for b in at.button if b.label.startswith("Push to")).click().run()
    job = only_transfer(isolated_home)
    assert job.error is None, job.error
    assert Store(served.store.home).is_installed("tiny-gpt2-mine")


def test_remove_a_remote(page, served, isolated_home):
    at = add_remote(page(), "class", served.url, served.keys["team"])
    at.button(key="remove_remote").click().run()
    assert not at.exception
    assert json.loads((isolated_home / "remotes.json").read_text()) == []
    assert any("No remote store saved yet" in i.value for i in at.info)


def test_a_url_that_is_no_store_url_is_refused_and_nothing_saved(page, isolated_home):
    at = add_remote(page(), "class", "ftp://teacher", "wb-x")
    assert any("is not a store URL" in e.value for e in at.error)
    assert not (isolated_home / "remotes.json").exists()
