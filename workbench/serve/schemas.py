"""Request bodies of the API (pydantic) and their translation into ``SamplingParams``.

Types are checked by pydantic (422 with the field named); values by ``to_params`` (400 with the
fix). OpenAI semantics: ``temperature`` defaults to 1 (sampling), 0 means greedy; ``n`` must be 1;
``seed`` makes sampling repeatable. ``/api/generate`` defaults to greedy and 64 new tokens, so the
same text always gets the same answer. Unknown fields are ignored, as OpenAI clients send extras.
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

    def params(self, default_max: int, default_temperature: float, logprobs: int | None,
               room: int | None = None) -> SamplingParams:
        """The request's ``SamplingParams``; without ``max_tokens``, ``default_max`` capped to
        ``room`` (what the context has left after the prompt)."""
        if self.n != 1:
            raise BadRequestError(f"n is {self.n}: this server returns one choice per request; send n=1 "
                                  "and repeat the request for more.")
        temperature = default_temperature if self.temperature is None else self.temperature
        if not 0 <= temperature <= 2:
            raise BadRequestError(f"temperature is {temperature}: use a value from 0 (greedy) to 2.")
        top_p = 1.0 if self.top_p is None else self.top_p
        if not 0 < top_p <= 1:
            raise BadRequestError(f"top_p is {top_p}: use a value in (0, 1].")
        top_k = self.top_k or 0
        if top_k < 0:
            raise BadRequestError(f"top_k is {top_k}: use 0 (off) or a positive number.")
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise BadRequestError(f"stop takes up to {MAX_STOPS} non-empty strings.")
        if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
            raise BadRequestError(f"logprobs is {logprobs}: ask for 0 to {MAX_LOGPROBS} alternatives.")
        if self.seed is not None and not -(2**63) <= self.seed < 2**63:
            raise BadRequestError("seed must fit in 64 bits.")
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

    def to_params(self, room: int | None = None) -> SamplingParams:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        if self.top_logprobs is not None and not self.logprobs:
            raise BadRequestError("top_logprobs needs logprobs=true.")
        return self.params(256, 1.0, (self.top_logprobs or 0) if self.logprobs else None, room)


class GenerateRequest(_Body):
    """``/api/generate``: the origin's form field ``text``; greedy unless a temperature is given."""

    text: str
    max_new_tokens: int | None = None
    chat: bool = False

    def to_params(self, room: int | None = None) -> SamplingParams:
        if self.max_tokens is None:
            self.max_tokens = self.max_new_tokens
        return self.params(64, 0.0, None, room)
