"""Load installed store models into memory, once per (installed weights, device, attention
implementation).

``load_model("smollm2-135m-instruct")`` returns a ``Model``: the torch module, its tokenizer, its
card and where it runs. Loaded models are kept in one cache per process, shared by the app, the
CLI and notebooks, bounded to ``max_cached_models()`` (``$WORKBENCH_MAX_MODELS``, default 4; the
least recently used goes first). The cache is keyed by what is installed (``Store.fingerprint``,
the manifest's file list), not by the folder: after ``workbench store install --force`` with other
weights, or a remove and add under the same id, every ``load_model`` in every process loads the new
weights, and the old copy leaves the cache. They are safe to share between threads for inference (each call
builds its own KV cache); anything that mutates the module (hooks, ablation) must hold
``model.lock``.

Never ``trust_remote_code``; weights load from safetensors only.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel  # noqa: F401

from ..errors import IntegrityError, UnsupportedModelError
from ..store import ModelCard, Store
from ..store.convert import check_hf_dir
from .devices import resolve_device, set_threads

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
DEFAULT_MAX_MODELS = 4
_CACHE: OrderedDict[tuple[str, str, str, str], "Model"] = OrderedDict()  # (path, fingerprint, device, attn)
_CACHE_LOCK = threading.Lock()
_LOAD_LOCKS: dict[tuple[str, str, str, str], threading.Lock] = {}
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def max_cached_models() -> int:
    """How many loaded models the cache keeps (``$WORKBENCH_MAX_MODELS``, default 4, at least 1)."""
    try:
        return max(int(os.environ.get("WORKBENCH_MAX_MODELS", DEFAULT_MAX_MODELS)), 1)
    except ValueError:
        return DEFAULT_MAX_MODELS


@dataclass(eq=False)
class Model:
    """A loaded store model. ``generate``/``stream`` are the notebook-friendly entry points."""

    card: ModelCard
    module: torch.nn.Module
    tokenizer: object
    device: str
    attn_implementation: str
    path: Path
    load_seconds: float
    store: Store | None = field(default=None, repr=False)  # the store it was loaded from
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def id(self) -> str:
        return self.card.id

    @property
    def config(self):
        return self.module.config

    @property
    def context_length(self) -> int:
        text = getattr(self.config, "text_config", None) or self.config
        limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
        return int(min(limit or self.card.context_length, self.card.context_length or limit))

    @property
    def eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.module, "generation_config", None), self.config, self.tokenizer):
            eos = getattr(source, "eos_token_id", None)
            if isinstance(eos, int):
                ids.add(eos)
            elif isinstance(eos, (list, tuple)):
                ids.update(int(e) for e in eos)
        return ids

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def generate(self, prompt: str | list[dict] = "", **settings):
        """Generate text; ``settings`` are ``GenerationConfig`` fields. Returns a result."""
        from .generation import generate

        return generate(self, prompt, **settings)

    def stream(self, prompt: str | list[dict] = "", **settings):
        """A ``Generation``: iterate it for text pieces, then read ``.result``."""
        from .generation import Generation

        return Generation(self, prompt, **settings)


def _load(store: Store, card: ModelCard, path: Path, device: str, attn: str) -> Model:
    check_hf_dir(path)
    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        module = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.float32,
            attn_implementation=attn,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise IntegrityError(
            f"Could not load '{card.id}' from {path}: {err}. The files may be damaged: run "
            f"`workbench store verify {card.id}`, then reinstall with `--force`."
        ) from err
    module.eval().to(device)
    return Model(card, module, tokenizer, device, attn, path, time.perf_counter() - start, store)


def load_model(
    name: str,
    *,
    store: Store | None = None,
    device: str = "auto",
    attn_implementation: str = "sdpa",
    threads: int | None = None,
) -> Model:
    """Load an installed model (cached). ``attn_implementation='eager'`` returns attention maps."""
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise UnsupportedModelError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}.")
    store = store or Store()
    card = store.card(name)
    path = store.path(card.id)
    device = resolve_device(device)
    set_threads(threads)
    key = (str(path), store.fingerprint(card.id), device, attn_implementation)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with load_lock:  # two sessions asking at once load it once
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        model = _load(store, card, path, device, attn_implementation)
        with _CACHE_LOCK:
            for stale in [k for k in _CACHE if k[0] == key[0] and k[2:] == key[2:] and k != key]:
                del _CACHE[stale]  # weights that are no longer installed
            _LOAD_LOCKS.pop(key, None)
            _CACHE[key] = model
            while len(_CACHE) > max_cached_models():
                _CACHE.popitem(last=False)  # the least recently used
        return model


def cached_models() -> list[Model]:
    """The loaded models in the cache, least recently used first."""
    with _CACHE_LOCK:
        return list(_CACHE.values())


def unload(name: str | None = None) -> None:
    """Drop cached models (all, or those of one model id) so a reinstall is picked up."""
    with _CACHE_LOCK:
        for key in [k for k, m in _CACHE.items() if name is None or m.card.id == name]:
            del _CACHE[key]
