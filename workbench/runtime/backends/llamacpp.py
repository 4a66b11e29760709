"""llama.cpp as a comparison backend (``llamacpp``): the model's own GGUF file, the one the store
installed it from, run by ``llama-cpp-python`` with the same thread count as the other backends.

It implements the ``Backend`` protocol over llama.cpp's single KV cache: the state of a sequence
is the tuple of token ids fed so far. A step continues the cache when the state is the one the
cache holds, and otherwise feeds the whole sequence again (one prefill), so interleaved
sequences stay correct, just slower. Logits are read from llama.cpp's output buffer after each
``llama_decode`` (the last position only), as float32.

``llama-cpp-python`` is an optional extra that compiles llama.cpp on install (an hour or more on
2 cores); it is imported only when this backend is made.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from ...common import cpu_count
from ...errors import WorkbenchError
from . import LLAMACPP, from_gguf, llamacpp_installed
from .hints import INSTALL_HINT

MAX_CONTEXT = 4096  # llama.cpp allocates the whole KV cache up front


class LlamaCppBackend:
    """``Backend`` over one ``llama_cpp.Llama`` (batch 1, CPU)."""

    name = LLAMACPP
    device = "cpu"
    variant = "gguf"  # what parity judges it as (tokens only: its dot products quantize activations)

    def __init__(self, gguf_path, context: int, threads: int | None = None):
        from llama_cpp import Llama

        self.threads = int(threads or cpu_count())
        self.gguf_path = gguf_path
        self.context = int(min(context, MAX_CONTEXT))
        self.llm = Llama(model_path=str(gguf_path), n_ctx=self.context, n_batch=512, n_threads=self.threads,
                         n_threads_batch=self.threads, logits_all=False, verbose=False)
        self.vocab = self.llm.n_vocab()
        self._lock = threading.Lock()
        self._held: tuple[int, ...] = ()  # the tokens llama.cpp's cache holds now

    def settings(self) -> dict:
        import llama_cpp

        return {"backend": self.name, "device": "cpu", "providers": [], "threads": self.threads,
                "variant": "gguf", "graph": str(self.gguf_path), "graph_optimization": "llama.cpp",
                "llama_cpp_python": llama_cpp.__version__, "context": self.context, "note": ""}

    def weight_bytes_per_token(self) -> int:
        """Bytes of the GGUF's weights a decode step reads."""
        from ...onnx.gguf_blocks import gguf_bytes_per_token

        return gguf_bytes_per_token(self.gguf_path)

    def _feed(self, before: tuple[int, ...], new: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
        if len(before) + len(new) > self.context:
            raise WorkbenchError(f"llama.cpp was opened with a {self.context}-token context; this sequence "
                                 f"needs {len(before) + len(new)}.")
        full = before + new
        with self._lock:
            if before is self._held or before == self._held:
                todo = new
            else:  # another sequence used the cache since: feed this one again
                self.llm.reset()
                todo = full
            self.llm.eval(list(todo))
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.vocab,)).copy()
            self._held = full
        return torch.from_numpy(logits), full

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self._feed((), tuple(int(t) for t in input_ids[0].tolist()))

    def step(self, token_id: int, state: Any) -> tuple[torch.Tensor, Any]:
        return self._feed(state, (int(token_id),))

    def synchronize(self) -> None:
        return None


def build(model, name: str, progress, device: str | None, threads: int | None, store) -> LlamaCppBackend:
    """The registry's hook: open the model's GGUF (fetched again if the entry lacks it)."""
    if not from_gguf(model.card):
        raise WorkbenchError(f"{model.card.name} does not come from a GGUF file, so llama.cpp has nothing to run; "
                             "pick a model installed from a GGUF.")
    if not llamacpp_installed():
        raise WorkbenchError(f"The llamacpp backend needs the optional llama-cpp-python package: {INSTALL_HINT}.")
    if device and device.startswith("cuda"):
        raise WorkbenchError("The llamacpp comparison backend runs on the CPU here; pick device cpu.")
    path = store.gguf_file(model.card.id, progress)
    return LlamaCppBackend(path, model.context_length, threads)
