"""The real llama.cpp backend's path, in its child process, over a fake ``llama_cpp`` package
written for the test (llama-cpp-python compiles for an hour): the 0.3.x API (no ``Llama``
argument for extra buffer types: ``llama_model_params.use_extra_bufts`` on the defaults), and a
fake that segfaults at its first evaluation with extra buffer types on, as the AMX build did."""
import textwrap

import numpy as np
import pytest

from workbench.runtime.backends.isolated import BackendCrashedError, IsolatedBackend
from workbench.runtime.backends.llamacpp import (
    CRASH_HINT,
    EXTRA_BUFTS_ENV,
    build_has_amx,
    extra_bufts_default,
)

FAKE_LLAMA_CPP = '''
import ctypes, os, signal
from . import llama_cpp as _native

__version__ = "0.3.36-fake"


class _Ctx:
    def __init__(self, llm):
        self.llm = llm

    def get_logits(self):
        return self.llm.buffer


class Llama:
    """Like llama-cpp-python 0.3.x: model params from llama_model_default_params(), unknown
    keywords swallowed by **kwargs."""

    def __init__(self, model_path, *, n_ctx=512, n_batch=512, n_threads=None, n_threads_batch=None,
                 logits_all=False, verbose=True, **kwargs):
        self.model_params = _native.llama_model_default_params()
        self.n_ctx, self.fed = n_ctx, []
        self.buffer = (ctypes.c_float * 16)()
        self._ctx = _Ctx(self)

    def n_vocab(self):
        return 16

    def reset(self):
        self.fed = []

    def eval(self, tokens):
        if self.model_params.use_extra_bufts:
            os.kill(os.getpid(), signal.SIGSEGV)  # what the AMX extra buffer type did
        self.fed += list(tokens)
        for i in range(16):
            self.buffer[i] = 1.0 if i == sum(self.fed) % 16 else 0.0
'''

FAKE_NATIVE = '''
class llama_model_params:
    def __init__(self):
        self.use_extra_bufts = True  # llama.cpp's default


def llama_model_default_params():
    return llama_model_params()
'''


@pytest.fixture
def fake_llama_cpp(tmp_path, monkeypatch):
    package = tmp_path / "site" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_LLAMA_CPP))
    (package / "llama_cpp.py").write_text(textwrap.dedent(FAKE_NATIVE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # the child adopts this sys.path
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    return gguf


def open_child(gguf, extra_bufts):
    return IsolatedBackend("llamacpp", "workbench.runtime.backends.llamacpp:LlamaCppBackend",
                           {"gguf_path": str(gguf), "context": 64, "threads": 1, "extra_bufts": extra_bufts},
                           hint=CRASH_HINT)


def test_extra_buffer_types_are_off_where_the_cpu_has_amx(monkeypatch):
    monkeypatch.delenv(EXTRA_BUFTS_ENV, raising=False)
    amx_cpu = ["avx2", "avx512f", "amx_tile", "amx_int8"]
    assert extra_bufts_default(amx_cpu, build_amx=True) is False
    assert extra_bufts_default(amx_cpu, build_amx=False) is True  # a build without AMX kernels runs them
    assert extra_bufts_default(["avx2", "fma", "avx512f", "avx512_vnni"]) is True
    assert build_has_amx("CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |")
    assert not build_has_amx("CPU : AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | REPACK = 1 |")
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "1")
    assert extra_bufts_default(["amx_int8"]) is True
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "0")
    assert extra_bufts_default(["avx2"]) is False


def test_llamacpp_runs_in_its_child_with_extra_buffer_types_off(fake_llama_cpp):
    backend = open_child(fake_llama_cpp, extra_bufts=False)
    try:
        logits, state = backend.prefill(np.array([[3, 4]]))
        assert int(logits.argmax()) == 7 and logits.shape == (16,)
        logits, state = backend.step(2, state)
        assert int(logits.argmax()) == 9
        settings = backend.settings()
        assert settings["use_extra_bufts"] is False and settings["llama_cpp_python"] == "0.3.36-fake"
        assert settings["isolation"] == "child process"
    finally:
        backend.close()


def test_llamacpp_crashing_with_extra_buffer_types_is_reported_with_the_fix(fake_llama_cpp):
    backend = open_child(fake_llama_cpp, extra_bufts=True)
    with pytest.raises(BackendCrashedError) as caught:
        backend.prefill(np.array([[3, 4]]))
    err = caught.value
    assert err.signal == "SIGSEGV" and err.phase == "first prefill"
    assert f"{EXTRA_BUFTS_ENV}=0" in str(err) and "GGML_AMX_INT8=OFF" in str(err)
