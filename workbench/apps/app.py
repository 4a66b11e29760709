"""An app at work: ``Store().app(ID)`` -> ``App``; ``chat``, ``stream`` and ``prepare`` a turn.

Each turn retrieves the card's ``knowledge.passages`` best passages for the question (BM25 over
the app's index; a knowledge file changed on disk is re-indexed first and the answer says so in
``notes``), assembles the prompt within the base model's context (``prompt.assemble``), and
generates with ``workbench.runtime.generation`` (greedy when the temperature is 0). Settings are
the card's ``[generation]``, overridden per call by keyword (``temperature``, ``top_p``,
``top_k``, ``max_new_tokens``, ``stop``, ``seed``). Every answer carries its citations (the
passages that were in the prompt) and the exact prompt text sent.

The base model is loaded on first use (``workbench.runtime.loading.load_model``, its shared
cache: apps on one base model share one loaded copy). Safe for concurrent turns.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from ..errors import InvalidInputError, ModelNotInstalledError
from .card import AppCard, read_app_card
from .catalog import (
    CARD,
    INDEX,
    KNOWLEDGE,
    base_problem,
    ensure_installed,
    reindex_if_changed,
)
from .index import search
from .knowledge import knowledge_text
from .prompt import Citation, Prepared, assemble

SETTINGS = ("temperature", "top_p", "top_k", "max_new_tokens", "stop", "seed")
PLAIN_STOP = ("\nUser:",)  # a model without a chat template would go on to write the next turn


@dataclass
class AppAnswer:
    """One answer: ``text``, ``citations`` (best first), the exact ``prompt`` sent, the
    ``settings`` used, ``notes`` (re-indexing, what was cut to fit), and timings."""

    app: str
    model: str
    text: str
    citations: list[Citation]
    prompt: str
    settings: dict
    notes: list[str] = field(default_factory=list)
    finish_reason: str = "eos"  # "eos" | "length" | "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float = 0.0
    total_ms: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["citations"] = [c.to_json() for c in self.citations]
        return d


class AppStream:
    """Iterate for text pieces as they are generated; then ``last`` holds the ``AppAnswer``.
    Text after a stop string is never yielded."""

    def __init__(self, app: App, prepared: Prepared, generation):
        self.app, self.prepared, self.generation = app, prepared, generation
        self.last: AppAnswer | None = None

    def __iter__(self) -> Iterator[str]:
        stops = list(self.prepared.settings["stop"])
        hold = max((len(s) for s in stops), default=1) - 1
        t0, t_first = time.perf_counter(), None
        text, sent, finish = "", 0, None
        gen = iter(self.generation)
        try:
            for piece in gen:
                t_first = t_first or time.perf_counter()
                text += piece
                hits = [text.find(s) for s in stops if s in text]
                if hits:
                    text, finish = text[:min(hits)], "stop"
                    break
                if len(text) - hold > sent:
                    yield text[sent:len(text) - hold]
                    sent = len(text) - hold
        finally:
            gen.close()
        if len(text) > sent:
            yield text[sent:]
        t_end = time.perf_counter()
        result = self.generation.result
        self.last = AppAnswer(
            app=self.app.id, model=self.app.card.base_model, text=text.strip(),
            citations=self.prepared.citations, prompt=self.generation.prompt_text,
            settings=self.prepared.settings, notes=list(self.prepared.notes),
            finish_reason=finish or (result.finish_reason if result else "length"),
            prompt_tokens=len(self.generation.prompt_ids), completion_tokens=len(self.generation.tokens),
            ttft_ms=((t_first or t_end) - t0) * 1000, total_ms=(t_end - t0) * 1000,
        )


class App:
    """An installed app (a built-in one is copied into the store on first use). ``model``: pass
    a loaded ``workbench.runtime.Model`` to skip the store's loader (tests, the server)."""

    def __init__(self, store, app_id: str, model=None):
        self.store = store
        self.folder = ensure_installed(store, app_id)
        self.card: AppCard = read_app_card(self.folder / CARD)
        self.id = self.card.id
        self._model = model

    @property
    def model(self):
        if self._model is None:
            problem = base_problem(self.store, self.card)
            if problem:
                raise ModelNotInstalledError(f"App '{self.id}' {problem}")
            from ..runtime.loading import load_model

            return load_model(self.card.base_model, store=self.store)
        return self._model

    def settings(self, **overrides) -> dict:
        """The card's generation settings with ``overrides`` (None values ignored), checked."""
        unknown = set(overrides) - set(SETTINGS)
        if unknown:
            raise InvalidInputError(f"Unknown app settings {sorted(unknown)}; known: {list(SETTINGS)}.")
        settings = asdict(self.card.generation)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        stop = settings["stop"]
        settings["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if not all(isinstance(s, str) and s for s in settings["stop"]):
            raise InvalidInputError("Stop strings must be non-empty text.")
        if settings["temperature"] < 0:
            raise InvalidInputError("Temperature must be 0 (greedy) or more.")
        return settings

    def knowledge_text(self, name: str) -> str:
        """The text a citation's ``start``/``end`` index into (``Citation.file`` names the file)."""
        if name not in self.card.knowledge_names:
            raise InvalidInputError(f"'{name}' is not a knowledge file of {self.id}: {list(self.card.knowledge_names)}.")
        return knowledge_text(self.folder / KNOWLEDGE / name)

    def retrieve(self, text: str, k: int | None = None) -> tuple[list[Citation], list[str]]:
        """The ``k`` (default: the card's) best passages for ``text`` as citations, and notes."""
        if not self.card.knowledge.files:
            return [], []
        notes = reindex_if_changed(self.store, self.id, self.card)
        k = self.card.knowledge.passages if k is None else k
        hits = search(self.folder / INDEX, text, k)
        return [Citation(p.file, p.heading, p.start, p.end, round(s, 4), p.text) for p, s in hits], notes

    def prepare(self, text: str, history=(), *, passages: int | None = None, **overrides) -> Prepared:
        """What a turn sends (see ``Prepared``), without generating."""
        settings = self.settings(**overrides)
        model = self.model
        chat = bool(model.has_chat_template)
        if not chat:
            settings["stop"] = list(dict.fromkeys([*settings["stop"], *PLAIN_STOP]))
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("The question is empty: type a message.")
        citations, notes = self.retrieve(text, passages)
        limit = model.context_length
        if settings["max_new_tokens"] >= limit:
            raise InvalidInputError(f"max_new_tokens {settings['max_new_tokens']} leaves no room for a prompt in "
                                    f"{model.card.name}'s {limit:,} tokens; lower it.")
        prepared = assemble(self.card, model.tokenizer, limit, text, history, citations, settings, chat)
        prepared.notes[:0] = notes
        return prepared

    def stream(self, text: str, history=(), **overrides) -> AppStream:
        """Iterate for text pieces; then ``.last`` is the ``AppAnswer``."""
        from ..runtime.generation import Generation

        prepared = self.prepare(text, history, **overrides)
        s = prepared.settings
        sample = s["temperature"] > 0
        generation = Generation(
            self.model, prepared.messages if prepared.chat else prepared.prompt,
            max_new_tokens=s["max_new_tokens"], do_sample=sample, temperature=s["temperature"] if sample else 0.7,
            top_p=s["top_p"], top_k=s["top_k"], seed=s["seed"], chat=prepared.chat,
        )
        return AppStream(self, prepared, generation)

    def chat(self, text: str, history=(), **overrides) -> AppAnswer:
        """Answer ``text`` (after ``history``: user/assistant turns) and return the ``AppAnswer``."""
        stream = self.stream(text, history, **overrides)
        for _ in stream:
            pass
        return stream.last


def open_app(store, app_id: str, model=None) -> App:
    """What ``Store.app`` calls (by dotted path)."""
    return App(store, app_id, model=model)
