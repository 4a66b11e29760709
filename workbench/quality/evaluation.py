"""Strided sliding-window perplexity of a model on a dataset's held-out split, on any backend,
with the mean KL divergence of each position's next-token distribution against torch fp32.

The method is the one of the transformers perplexity guide and llama.cpp's ``perplexity``: the
held-out documents are joined (two newlines between them) and tokenized once, cut to
``max_tokens``; a window of ``window`` tokens moves by ``stride``; each window scores only the
tokens no earlier window scored, so every token is predicted once, with at least
``window - stride`` tokens of context (except at the start). ``perplexity = exp(mean NLL)``.

Backends come from the registry (``workbench.runtime.backends.make_backend``). torch scores a
window in one forward pass; a backend that only returns the last position's logits (the ONNX
Runtime exports) is fed the window one token at a time through its KV cache (``prefill`` then
``step``), which gives the same numbers at decode speed. With ``reference=True`` a non-torch
backend is also compared to torch fp32 on the same windows: mean KL(P_torch || P_backend) per
position (llama.cpp's KLD) and how often both pick the same top token.

Returns numbers (``PerplexityResult``); storing them is ``results``, formatting is the caller's.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from ..common import Progress, quiet
from ..data.formats import render
from ..errors import InvalidInputError
from ..runtime.backends import TORCH, backend_settings, make_backend

DEFAULT_WINDOW = 512
DEFAULT_MAX_TOKENS = 4096
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class PerplexityResult:
    """``perplexity`` = exp(``nll``); ``nll`` in nats per token over ``tokens`` scored tokens."""

    model: str
    dataset: str
    dataset_sha256: str
    backend: str
    device: str
    perplexity: float
    nll: float
    tokens: int
    window: int
    stride: int
    max_tokens: int
    seconds: float
    kld_mean: float | None = None  # mean KL(torch fp32 || backend) per position, nats
    top1_agreement: float | None = None  # share of positions where both pick the same token
    measured_at: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def eval_token_ids(tokenizer, documents, max_tokens: int) -> list[int]:
    """The held-out documents rendered (chat through the template), joined, tokenized, cut."""
    text = SEPARATOR.join(render(d, tokenizer) for d in documents)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids[:max_tokens])


def _window_logits(backend, ids: torch.Tensor) -> torch.Tensor:
    """(T, V) float32 logits of every position of ``ids`` (1, T) on ``backend``."""
    module = getattr(backend, "module", None)
    if backend.name == TORCH and module is not None:
        with torch.inference_mode():
            return module(input_ids=ids.to(backend.device)).logits[0].float().cpu()
    rows = []
    logits, state = backend.prefill(ids[:, :1])
    rows.append(logits.float().cpu())
    for token in ids[0, 1:].tolist():
        logits, state = backend.step(int(token), state)
        rows.append(logits.float().cpu())
    return torch.stack(rows)


def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_target)`` per window: it reads ``ids[begin:end]`` and scores the
    targets ``first_target..end-1``: each token of the text once (the first one never). With
    ``stride == window`` the first token of each window has no context and is not scored, as in
    the transformers guide."""
    spans, prev_end, begin = [], 1, 0
    while prev_end < n_tokens:
        end = min(begin + window, n_tokens)
        spans.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        begin += stride
    return spans


def perplexity(
    model,
    dataset,
    backend=TORCH,
    *,
    window: int | None = None,
    stride: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    reference: bool = True,
    progress: Progress = quiet,
    store=None,
) -> PerplexityResult:
    """Perplexity of a loaded ``model`` on ``dataset.eval`` (a ``workbench.data.Dataset``) on
    the backend named ``backend`` (or a ready backend object). ``window`` defaults to min(512, context); ``stride`` to half
    the window."""
    window = int(window or min(DEFAULT_WINDOW, model.context_length))
    stride = int(stride or max(window // 2, 1))
    if window < 2 or window > model.context_length:
        raise InvalidInputError(f"window must be between 2 and the model's context ({model.context_length}) tokens.")
    if not 1 <= stride <= window:
        raise InvalidInputError(f"stride must be between 1 and the window ({window}).")
    ids = eval_token_ids(model.tokenizer, dataset.eval, max_tokens)
    if len(ids) < 2:
        raise InvalidInputError(f"The held-out split of {dataset.id} has fewer than 2 tokens: give more text.")
    if isinstance(backend, str):
        runner = make_backend(model, backend, progress=lambda f, m: progress(0.1 * f, m), store=store)
    else:  # a ready backend object
        runner, backend = backend, backend.name
    ref = make_backend(model, TORCH) if reference and backend != TORCH else None
    all_ids = torch.tensor([ids])  # (1, N)
    nll_sum, kld_sum, agree, scored = 0.0, 0.0, 0, 0
    spans = windows(len(ids), window, stride)
    start = time.perf_counter()
    for i, (begin, end, first) in enumerate(spans):
        chunk = all_ids[:, begin:end]
        positions = slice(first - 1 - begin, end - 1 - begin)  # logits at p predict token p + 1
        logp = torch.log_softmax(_window_logits(runner, chunk)[positions].double(), -1)  # (S, V)
        targets = all_ids[0, first:end]
        nll_sum -= logp.gather(1, targets[:, None]).sum().item()
        if ref is not None:
            ref_logp = torch.log_softmax(_window_logits(ref, chunk)[positions].double(), -1)
            kld_sum += (ref_logp.exp() * (ref_logp - logp)).sum().item()
            agree += int((ref_logp.argmax(-1) == logp.argmax(-1)).sum())
        scored += len(targets)
        progress(0.1 + 0.9 * (i + 1) / len(spans), f"{backend}: {scored} of {len(ids) - 1} tokens scored")
    nll = nll_sum / scored
    return PerplexityResult(
        model=model.card.id, dataset=dataset.id, dataset_sha256=dataset.sha256, backend=backend,
        device=str(backend_settings(runner).get("device", model.device)), perplexity=math.exp(nll),
        nll=nll, tokens=scored, window=window, stride=stride, max_tokens=max_tokens,
        seconds=time.perf_counter() - start,
        kld_mean=kld_sum / scored if ref is not None else None,
        top1_agreement=agree / scored if ref is not None else None,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
