"""Request bodies of the API (pydantic) and their translation into ``SamplingParams``.

Types are checked by pydantic (422 with the field named); values by ``to_params`` (400 with the
fix). OpenAI semantics: ``temperature`` defaults to 1 (sampling), 0 means greedy; ``n`` must be 1;
``seed`` makes sampling repeatable. ``/api/generate`` defaults to greedy and 64 new tokens, so the
same text always gets the same answer. Unknown fields are ignored, as OpenAI clients send extras.

For an app, the defaults are the app card's ``[generation]``: ``overrides()`` gives only the
values the request sets (checked the same way), and ``app_params(settings)`` turns the app's
settings after those overrides into ``SamplingParams``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .errors import BadRequestError
from .sampling import SamplingParams

MAX_LOGPROBS = 20
MAX_STOPS = 4


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # not OpenAI; vLLM and the workbench accept it
    n: int = 1
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    ignore_eos: bool = False  # vLLM's extension: generate max_tokens even past end-of-sequence

    def _max_tokens(self) -> int | None:
        """``max_tokens`` or the route's other name for it."""
        return self.max_tokens

    def logprobs_k(self) -> int | None:
        """How many alternatives to report per token (None: no logprobs)."""
        return None

    def _stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def overrides(self) -> dict:
        """The app settings this request sets (``temperature``, ``top_p``, ``top_k``,
        ``max_new_tokens``, ``stop``, ``seed``): only those it gives, each checked as in
        ``params``. An empty ``stop`` list sets nothing (the app's stop strings stay)."""
        self._check(None, 0.0)
        max_tokens = self._max_tokens()
        if max_tokens is not None and max_tokens < 1:
            raise BadRequestError(f"max_tokens is {max_tokens!r}: ask for at least 1 new token.")
        given = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                 "max_new_tokens": max_tokens, "stop": self._stops() or None, "seed": self.seed}
        return {k: v for k, v in given.items() if v is not None}

    def app_params(self, settings: dict, logprobs: int | None = None) -> SamplingParams:
        """``SamplingParams`` from an app's settings (``App.settings``: the card's values with
        ``overrides()`` applied), with the request's ``logprobs`` and ``ignore_eos``."""
        return SamplingParams(
            max_tokens=int(settings["max_new_tokens"]), temperature=float(settings["temperature"]),
            top_p=float(settings["top_p"]), top_k=int(settings["top_k"]), seed=settings.get("seed"),
            stop=tuple(settings["stop"]), logprobs=logprobs, ignore_eos=self.ignore_eos,
        )

    def _check(self, logprobs: int | None, default_temperature: float) -> None:
        """400 with the fix for a value out of range (types are pydantic's)."""
        if self.n != 1:
            raise BadRequestError(f"n is {self.n}: this server returns one choice per request; send n=1 "
                                  "and repeat the request for more.")
        temperature = default_temperature if self.temperature is None else self.temperature
        if not 0 <= temperature <= 2:
            raise BadRequestError(f"temperature is {temperature}: use a value from 0 (greedy) to 2.")
        top_p = 1.0 if self.top_p is None else self.top_p
        if not 0 < top_p <= 1:
            raise BadRequestError(f"top_p is {top_p}: use a value in (0, 1].")
        if (self.top_k or 0) < 0:
            raise BadRequestError(f"top_k is {self.top_k}: use 0 (off) or a positive number.")
        stops = self._stops()
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise BadRequestError(f"stop takes up to {MAX_STOPS} non-empty strings.")
        if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
            raise BadRequestError(f"logprobs is {logprobs}: ask for 0 to {MAX_LOGPROBS} alternatives.")
        if self.seed is not None and not -(2**63) <= self.seed < 2**63:
            raise BadRequestError("seed must fit in 64 bits.")

    def params(self, default_max: int, default_temperature: float, logprobs: int | None,
               room: int | None = None) -> SamplingParams:
        """The request's ``SamplingParams``; without ``max_tokens``, ``default_max`` capped to
        ``room`` (what the context has left after the prompt)."""
        self._check(logprobs, default_temperature)
        temperature = default_temperature if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        top_k = self.top_k or 0
        stops = self._stops()
        return SamplingParams(
            max_tokens=(min(default_max, max(room, 1)) if room is not None else default_max)
            if self.max_tokens is None else self.max_tokens,
            temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), seed=self.seed,
            stop=tuple(stops), logprobs=logprobs, ignore_eos=self.ignore_eos,
        )


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(_Body):
    model: str
    prompt: str | list[str]
    logprobs: int | None = None
    echo: bool = False
    stream_options: StreamOptions | None = None

    def prompt_text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise BadRequestError("Send one prompt per request (a string, or a list of one string).")
            return self.prompt[0]
        if self.echo:
            raise BadRequestError("echo is not supported; leave it false.")
        return self.prompt

    def to_params(self, room: int | None = None) -> SamplingParams:
        return self.params(16, 1.0, self.logprobs, room)

    def logprobs_k(self) -> int | None:
        return self.logprobs


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict] | None = None

    def as_dict(self) -> dict:
        content = self.content
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            texts = [p.get("text", "") for p in content if p.get("type") == "text"]
            if len(texts) != len(content):
                raise BadRequestError("Only text content parts are supported (type 'text').")
            content = "".join(texts)
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": content or ""}


class ChatRequest(_Body):
    model: str
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    stream_options: StreamOptions | None = None

    def _max_tokens(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    def logprobs_k(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise BadRequestError("top_logprobs needs logprobs=true.")
        return (self.top_logprobs or 0) if self.logprobs else None

    def to_params(self, room: int | None = None) -> SamplingParams:
        self.max_tokens = self._max_tokens()
        return self.params(256, 1.0, self.logprobs_k(), room)


class GenerateRequest(_Body):
    """``/api/generate``: the origin's form field ``text``; greedy unless a temperature is given."""

    text: str
    max_new_tokens: int | None = None
    chat: bool = False

    def _max_tokens(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_new_tokens

    def to_params(self, room: int | None = None) -> SamplingParams:
        self.max_tokens = self._max_tokens()
        return self.params(64, 0.0, None, room)
