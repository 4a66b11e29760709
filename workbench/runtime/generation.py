"""Text generation over any ``Backend``: greedy or sampled, plain or chat, streamed.

The loop here owns tokenization, sampling, stopping and timing; backends only run the network.
Per generated token the result records the model's probability of that token and its top-k
alternatives, both from the model's own distribution (softmax of the raw logits, temperature 1),
not the reshaped distribution that sampling drew from.

Timings (wall clock, ms): ``ttft_ms`` from the call to the first token (tokenization and
prefill included); ``decode_ms_per_token`` the mean time of each later token; ``tokens_per_s``
generated tokens / total time.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator

import torch

from ..errors import InvalidInputError
from .backends import Backend
from .backends.torch_eager import TorchBackend
from .sampling import argmax, choose, softmax_top

MAX_PROMPT_CHARS = 200_000
MAX_NEW_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    seed: int = 0
    chat: bool = False
    system_prompt: str = ""
    top_alternatives: int = 5
    stop_at_eos: bool = True
    min_new_tokens: int = 0

    def validate(self) -> "GenerationConfig":
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidInputError(f"Max new tokens is {self.max_new_tokens}: it must be at least 1.")
        if self.max_new_tokens > MAX_NEW_TOKENS_LIMIT:
            raise InvalidInputError(
                f"Max new tokens is {self.max_new_tokens}; the workbench allows at most "
                f"{MAX_NEW_TOKENS_LIMIT} per call. Lower it."
            )
        if self.do_sample and not self.temperature > 0:
            raise InvalidInputError(
                "Temperature 0 with sampling on is undefined: raise the temperature above 0, "
                "or turn sampling off for greedy decoding (what temperature 0 means)."
            )
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"Top-p is {self.top_p}: it must be in (0, 1].")
        if self.top_k < 0:
            raise InvalidInputError(f"Top-k is {self.top_k}: use 0 (off) or a positive number.")
        if not self.repetition_penalty > 0:
            raise InvalidInputError("Repetition penalty must be above 0 (1.0 = off).")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise InvalidInputError("Min new tokens must be between 0 and max new tokens.")
        return self


@dataclass(frozen=True)
class Alternative:
    token: str
    id: int
    prob: float


@dataclass(frozen=True)
class TokenInfo:
    token: str
    id: int
    prob: float
    top: tuple[Alternative, ...]

    def to_json(self) -> dict:
        return {
            "token": self.token,
            "id": self.id,
            "prob": self.prob,
            "top": [{"token": a.token, "id": a.id, "prob": a.prob} for a in self.top],
        }


@dataclass
class GenerationResult:
    model: str
    backend: str
    device: str
    threads: int
    prompt: str
    prompt_ids: list[int]
    text: str
    token_ids: list[int]
    tokens: list[TokenInfo]
    finish_reason: str  # "eos" | "length"
    ttft_ms: float
    total_ms: float
    prefill_ms: float
    decode_ms_per_token: float
    config: GenerationConfig = field(default_factory=GenerationConfig)

    @property
    def tokens_per_s(self) -> float:
        return len(self.token_ids) / (self.total_ms / 1000) if self.total_ms > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "text": self.text,
            "tokens": [t.to_json() for t in self.tokens],
            "finish_reason": self.finish_reason,
            "prompt_tokens": len(self.prompt_ids),
            "ttft_ms": self.ttft_ms,
            "tokens_per_s": self.tokens_per_s,
            "total_ms": self.total_ms,
            "prefill_ms": self.prefill_ms,
            "decode_ms_per_token": self.decode_ms_per_token,
            "config": asdict(self.config),
        }


def make_config(**settings) -> GenerationConfig:
    names = {f.name for f in fields(GenerationConfig)}
    unknown = set(settings) - names
    if unknown:
        raise InvalidInputError(f"Unknown generation settings {sorted(unknown)}; known: {sorted(names)}.")
    return GenerationConfig(**settings).validate()


def build_prompt(model, prompt: str | list[dict], config: GenerationConfig) -> tuple[str, list[int]]:
    """Return the text the model sees and its token ids (chat template applied in chat mode).

    ``prompt`` is a string, or in chat mode a list of ``{"role", "content"}`` messages.
    """
    tok = model.tokenizer
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("The prompt is empty: type some text to continue.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInputError(
                f"The prompt has {len(prompt):,} characters; the workbench takes at most "
                f"{MAX_PROMPT_CHARS:,}. Shorten it."
            )
    if config.chat:
        if not model.has_chat_template:
            raise InvalidInputError(
                f"{model.card.name} has no chat template (it is a base model): turn chat mode off "
                "and write a prompt for it to continue."
            )
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if not messages or not any(str(m.get("content", "")).strip() for m in messages):
            raise InvalidInputError("The chat is empty: type a message.")
        if config.system_prompt and messages[0].get("role") != "system":
            messages = [{"role": "system", "content": config.system_prompt}] + messages
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
    else:
        if not isinstance(prompt, str):
            raise InvalidInputError("A list of messages needs chat mode on.")
        text = prompt
        ids = tok(text)["input_ids"]
    limit = model.context_length
    if len(ids) >= limit:
        raise InvalidInputError(
            f"The prompt is {len(ids):,} tokens; {model.card.name} reads at most {limit:,}. "
            "Shorten the prompt."
        )
    if len(ids) + config.max_new_tokens > limit:
        raise InvalidInputError(
            f"The prompt is {len(ids):,} tokens and {config.max_new_tokens} new tokens were asked "
            f"for; {model.card.name} holds {limit:,} in all. Set max new tokens to at most "
            f"{limit - len(ids):,} or shorten the prompt."
        )
    return text, ids


class Generation:
    """A generation in progress. Iterating yields text pieces as they are decoded (for
    ``st.write_stream`` or a terminal); afterwards ``result`` holds the ``GenerationResult``.
    ``tokens`` grows token by token while it runs."""

    def __init__(self, model, prompt: str | list[dict] = "", backend: Backend | None = None, **settings):
        self.model = model
        self.config = make_config(**settings)
        self.backend = backend or TorchBackend(model)
        self.prompt_text, self.prompt_ids = build_prompt(model, prompt, self.config)
        self.tokens: list[TokenInfo] = []
        self.result: GenerationResult | None = None
        self._t0 = time.perf_counter()

    def _info(self, token_id: int, logits: torch.Tensor) -> TokenInfo:
        tok = self.model.tokenizer
        probs, top = softmax_top(logits, max(self.config.top_alternatives, 1))
        alts = tuple(Alternative(tok.decode([i]), i, float(probs[i])) for i in top)
        return TokenInfo(tok.decode([token_id]), token_id, float(probs[token_id]), alts)

    def __iter__(self) -> Iterator[str]:
        cfg, tok, backend = self.config, self.model.tokenizer, self.backend
        eos = self.model.eos_token_ids if cfg.stop_at_eos else set()
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        prompt = torch.tensor([self.prompt_ids], dtype=torch.long)
        seen = torch.tensor(self.prompt_ids, dtype=torch.long)
        new_ids: list[int] = []
        emitted = ""
        finish = "length"
        t_start = self._t0
        logits, state = backend.prefill(prompt)
        seen = seen.to(logits.device)
        backend.synchronize()
        t_prefill = time.perf_counter()
        t_first = None
        for i in range(cfg.max_new_tokens):
            if i < cfg.min_new_tokens and eos:
                logits = logits.clone()
                logits[list(eos)] = float("-inf")
            token_id = choose(logits, seen, cfg, gen)
            if t_first is None:
                t_first = time.perf_counter()
            if token_id in eos:
                finish = "eos"
                break
            self.tokens.append(self._info(token_id, logits))
            new_ids.append(token_id)
            seen = torch.cat([seen, torch.tensor([token_id], device=seen.device)])
            text = tok.decode(new_ids, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > len(emitted) and text.startswith(emitted):
                piece, emitted = text[len(emitted):], text
                yield piece
            if i + 1 < cfg.max_new_tokens:
                logits, state = backend.step(token_id, state)
        backend.synchronize()
        t_end = time.perf_counter()
        text = tok.decode(new_ids, skip_special_tokens=True)
        if len(text) > len(emitted) and text.startswith(emitted):
            yield text[len(emitted):]
        t_first = t_first or t_end
        n = len(new_ids)
        self.result = GenerationResult(
            model=self.model.card.id,
            backend=backend.name,
            device=backend.device,
            threads=getattr(backend, "threads", None) or torch.get_num_threads(),
            prompt=self.prompt_text,
            prompt_ids=list(self.prompt_ids),
            text=text,
            token_ids=new_ids,
            tokens=list(self.tokens),
            finish_reason=finish,
            ttft_ms=(t_first - t_start) * 1000,
            total_ms=(t_end - t_start) * 1000,
            prefill_ms=(t_prefill - t_start) * 1000,
            decode_ms_per_token=((t_end - t_first) * 1000 / (n - 1)) if n > 1 else 0.0,
            config=self.config,
        )

    def run(self) -> GenerationResult:
        for _ in self:
            pass
        return self.result


def greedy(backend: Backend, input_ids: torch.Tensor, steps: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Greedy decoding at its barest, the loop the benchmark and parity checks time and compare:
    yields ``(token id, logits (V,) it was chosen from)`` ``steps`` times, one forward pass each
    (the prefill of ``input_ids`` (1, T) first). No sampling, stopping, text or timing."""
    logits, state = backend.prefill(input_ids)
    for i in range(steps):
        token = argmax(logits)
        yield token, logits
        if i + 1 < steps:
            logits, state = backend.step(token, state)


def generate(model, prompt: str | list[dict] = "", backend: Backend | None = None, **settings) -> GenerationResult:
    """Generate and return the finished ``GenerationResult`` (see module docstring)."""
    return Generation(model, prompt, backend=backend, **settings).run()
