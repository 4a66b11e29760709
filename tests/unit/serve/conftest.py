"""Fixtures for the server tests: a key in the tiny store, and uvicorn on a free loopback port
in a thread, always shut down (and its batchers closed) at the end of the test."""
from __future__ import annotations

import pytest


@pytest.fixture
def api_key(tiny_store) -> str:
    from workbench.serve.keys import KeyStore

    return KeyStore(tiny_store.home).create("test")


@pytest.fixture
def start_server(tiny_store):
    """``start_server(models=None, **build_app options)`` -> a running ``ServerThread`` whose
    ``registry`` attribute is the app's ``ModelRegistry``."""
    from workbench.serve.server import ServerThread, build_app

    running = []

    def _start(models=None, **options):
        app, registry = build_app(tiny_store, models, **options)
        server = ServerThread(app, host="127.0.0.1").start()
        server.registry = registry
        running.append(server)
        return server

    yield _start
    for server in running:
        server.stop()
        server.registry.close()


@pytest.fixture
def server(start_server, api_key):
    s = start_server(["tiny-gpt2", "tiny-llama"])
    s.key = api_key
    return s
