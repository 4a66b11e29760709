"""Shared fixtures. Every test gets its own empty store (``WORKBENCH_HOME`` in a temp dir) and
the Hugging Face hub switched off, so no test touches the user's store or the network.

A test's folder is its tier: every test under ``tests/browser/`` is marked ``browser``, under
``tests/slow/`` ``slow`` and under ``tests/gpu/`` ``gpu``, so ``-m "not slow and not browser"``
selects the quick tier whatever a file itself declares."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.testing import tiny_models
from workbench.testing import ROOT
from workbench.testing.stores import make_tiny_store  # noqa: F401

TINY_KINDS = ("gpt2", "llama", "gemma3")
TESTS = Path(__file__).resolve().parent
TIER_OF_FOLDER = {"browser": "browser", "slow": "slow", "gpu": "gpu"}


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(item.path).resolve()
        if path.is_relative_to(TESTS):
            tier = TIER_OF_FOLDER.get(path.relative_to(TESTS).parts[0])
            if tier:
                item.add_marker(tier)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "workbench-home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return home


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Saved HF folders of the tiny models, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: tiny_models.build(kind, root / kind) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def long_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama that reads 4,096 tokens (see ``tiny_models.build_long_llama``)."""
    return tiny_models.build_long_llama(tmp_path_factory.mktemp("tiny-long"))


@pytest.fixture(scope="session")
def long_chat_dir(tmp_path_factory):
    """A tiny Llama reading 4,096 tokens, with the chat template (passages fit beside a question)."""
    from transformers import AutoTokenizer

    from workbench.testing import tiny_models

    path = tiny_models.build_long_llama(tmp_path_factory.mktemp("long-chat"))
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = tiny_models.CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


@pytest.fixture
def tiny_store(isolated_home, tiny_model_dirs):
    """A fresh store with the tiny models installed (see ``make_tiny_store``)."""
    from workbench.runtime import loading

    yield make_tiny_store(isolated_home, tiny_model_dirs)
    loading.unload()


@pytest.fixture(scope="session")
def real_store(tmp_path_factory):
    """A store with the real default model installed from its real source (slow tests only).
    ``WORKBENCH_REAL_HOME`` points it at a folder kept between runs (exports are cached there)."""
    from workbench.store import Store

    home = os.environ.get("WORKBENCH_REAL_HOME") or str(tmp_path_factory.mktemp("real-home"))
    store = Store(home)
    store.install("smollm2-135m-instruct")
    return store


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of this checkout (no dependencies, no build isolation): the .whl file."""
    dist = tmp_path_factory.mktemp("wheel") / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, timeout=300, capture_output=True)
    return next(dist.glob("*.whl"))


@pytest.fixture(scope="session")
def installed_wheel(built_wheel) -> Path:
    """That wheel installed (without dependencies) into a folder outside the repo."""
    target = built_wheel.parent.parent / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(built_wheel)],
                   check=True, timeout=300, capture_output=True)
    return target
