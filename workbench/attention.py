"""Attention maps of store models, as plain numpy arrays.

``attention(model, "some text")`` runs one eager forward pass and returns an ``AttentionResult``:
the tokens as a person reads them (no ``Ġ``/``▁`` markers; spaces shown as ``␣``, newlines as
``↵``) and the weights as float32 ``[layers, heads, query, key]``, one map per *query* head (a
grouped-query model's shared key/value heads are repeated, as transformers' eager attention
does). Rows sum to 1; entries above the diagonal (the future) and, on sliding-window layers,
outside the window are 0.

Also here: attention rows of generated tokens (``generation_attention``, ``generate_with_attention``),
summaries (``mean_over_heads``, ``rollout``, ``head_stats``), a memory estimate to check before a
long text (``estimate_memory``), and the two reductions that keep long maps drawable
(``downsample``, ``top_k_edges``), each carrying a note of what it reduced.

The weights come from forward hooks on each layer's attention module, which needs the model
loaded with ``attn_implementation="eager"`` (sdpa never materialises the weights). Hooks are
installed only while ``model.lock`` is held, and record only the forward of the thread that
installed them. Nothing here draws: ``attention_views`` and ``bertviz_offline`` do.
"""
from __future__ import annotations

import codecs
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from .errors import InvalidInputError, UnsupportedModelError, WorkbenchError

FULL, SLIDING = "full", "sliding"
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
# Leave this share of the memory that is free now for everything else.
MEMORY_SHARE = 0.5


# --- tokens ---------------------------------------------------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable-character table (byte-level BPE writes tokens in it)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _is_byte_level(tokenizer) -> bool:
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return False
    decoder = json.loads(decoder.__getstate__())  # the decoder's own JSON, not the whole vocab
    kinds = {decoder.get("type")} | {d.get("type") for d in decoder.get("decoders", []) or []}
    return "ByteLevel" in kinds


def token_bytes(tokenizer, ids: Sequence[int]) -> list[bytes]:
    """The raw UTF-8 bytes each token stands for (special tokens: their name)."""
    pieces = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    byte_level = _is_byte_level(tokenizer)
    out = []
    for piece in pieces:
        piece = piece or ""
        if piece in special:
            out.append(piece.encode())
        elif byte_level and all(c in _UNICODE_TO_BYTE for c in piece):
            out.append(bytes(_UNICODE_TO_BYTE[c] for c in piece))
        elif _BYTE_FALLBACK.fullmatch(piece):
            out.append(bytes([int(_BYTE_FALLBACK.fullmatch(piece).group(1), 16)]))
        else:  # sentencepiece style: ▁ is a space
            out.append(piece.replace("▁", " ").encode())
    return out


def make_visible(text: str) -> str:
    """Spaces, newlines, tabs and other control characters as visible symbols (␣ ↵ ⇥ ␀ ␡)."""
    out = []
    for c in text:
        if c in VISIBLE:
            out.append(VISIBLE[c])
        elif ord(c) < 0x20:
            out.append(chr(0x2400 + ord(c)))  # the Control Pictures block: ␀ ␁ …
        elif c == "\x7f":
            out.append("␡")
        else:
            out.append(c)
    return "".join(out)


def display_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Token strings as a person reads them: decoded bytes with spaces/newlines made visible.

    A character split across tokens (an emoji in two byte-level tokens) is shown on the token
    that completes it; the tokens before it (and bytes that are not UTF-8) show their bytes,
    e.g. ``‹f0 9f›``, also after text they complete (``␣‹f0 9f›``: a space and an emoji's start)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    labels = []
    for raw in token_bytes(tokenizer, ids):
        text = decoder.decode(raw)
        if not text or ("\ufffd" in text and b"\xef\xbf\xbd" not in raw):  # partial or invalid UTF-8
            labels.append("‹" + raw.hex(" ") + "›" if raw else "∅")
        else:
            pending = decoder.getstate()[0]  # bytes of a character this token starts
            labels.append(make_visible(text) + ("‹" + pending.hex(" ") + "›" if pending else ""))
    return labels


# --- model structure ------------------------------------------------------------------------------

def _text_config(config):
    return getattr(config, "text_config", None) or config


def attention_modules(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention module of every decoder layer (Llama/Gemma ``self_attn``, GPT-2 ``attn``)."""
    base = getattr(module, "model", None) or getattr(module, "transformer", None)
    if base is not None and hasattr(base, "language_model"):
        base = base.language_model
    blocks = getattr(base, "layers", None) if base is not None else None
    if blocks is None and base is not None:
        blocks = getattr(base, "h", None)
    if blocks is None:
        raise UnsupportedModelError(
            f"{type(module).__name__} has no decoder layers where the workbench looks (model.layers "
            "or transformer.h): attention maps work for Llama, Gemma 3 and GPT-2 style models."
        )
    found = []
    for block in blocks:
        attn = getattr(block, "self_attn", None) or getattr(block, "attn", None)
        if attn is None:
            raise UnsupportedModelError(f"A layer of {type(module).__name__} has no self_attn/attn module.")
        found.append(attn)
    return found


@dataclass(frozen=True)
class Shape:
    """What the attention of a model looks like."""

    layers: int
    heads: int
    kv_heads: int
    layer_kinds: tuple[str, ...]
    sliding_window: int | None
    hidden_size: int
    vocab_size: int


def model_shape(model) -> Shape:
    cfg = _text_config(model.config)
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    window = getattr(cfg, "sliding_window", None)
    types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * layers)
    kinds = tuple(SLIDING if window and t == "sliding_attention" else FULL for t in types)
    hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
    return Shape(int(layers), int(heads), int(kv), kinds, int(window) if window and SLIDING in kinds else None,
                 int(hidden), int(cfg.vocab_size))


def _check_eager(model) -> None:
    impl = getattr(model.config, "_attn_implementation", None) or getattr(model, "attn_implementation", None)
    if impl != "eager":
        raise UnsupportedModelError(
            f"{model.card.name} is loaded with attn_implementation='{impl}', which does not return "
            "attention weights. Load it with attn_implementation='eager' "
            "(load_model(..., attn_implementation='eager'))."
        )


# --- memory ---------------------------------------------------------------------------------------

def available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return 8 * 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes an attention run over ``tokens`` tokens needs on top of the loaded model.

    ``weights_bytes``: the float32 result ``[layers kept, heads, T, T]``. ``peak_bytes``: that plus
    one layer's eager scores (pre-softmax, softmax, a copy) and the activations of one pass."""

    tokens: int
    layers: int
    heads: int
    weights_bytes: int
    peak_bytes: int
    budget_bytes: int

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes

    def describe(self) -> str:
        return (f"{self.tokens} tokens × {self.layers} layers × {self.heads} heads: the weights take "
                f"{_human(self.weights_bytes)}, the run about {_human(self.peak_bytes)} at its peak "
                f"(budget {_human(self.budget_bytes)}).")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def estimate_memory(model, tokens: int, layers: Sequence[int] | None = None,
                    budget_bytes: int | None = None) -> MemoryEstimate:
    """Estimate before running (no forward pass). ``budget_bytes`` defaults to half the free RAM."""
    s = model_shape(model)
    kept = len(layers) if layers is not None else s.layers
    per_map = s.heads * tokens * tokens * 4
    weights = kept * per_map
    activations = tokens * s.hidden_size * 4 * 16 + s.vocab_size * 4
    peak = weights + 3 * per_map + activations
    budget = budget_bytes if budget_bytes is not None else int(available_memory() * MEMORY_SHARE)
    return MemoryEstimate(tokens, kept, s.heads, weights, peak, budget)


def max_tokens_within(model, budget_bytes: int, layers: int | None = None) -> int:
    """The longest text whose attention run fits ``budget_bytes``."""
    s = model_shape(model)
    kept = layers or s.layers
    # peak ~ (kept + 3) * heads * 4 * T^2 + 64 * hidden * T + 4 * vocab
    a, b, c = (kept + 3) * s.heads * 4, 64 * s.hidden_size, 4 * s.vocab_size - budget_bytes
    return max(int((-b + (b * b - 4 * a * c) ** 0.5) / (2 * a)), 0)


def layers_that_fit(model, tokens: int, budget_bytes: int | None = None) -> list[int]:
    """The most evenly spaced layers (first and last kept when two or more fit) whose attention
    over ``tokens`` tokens fits ``budget_bytes``; ``[]`` when not even one layer fits."""
    layers = model_shape(model).layers
    budget = budget_bytes if budget_bytes is not None else int(available_memory() * MEMORY_SHARE)
    count = layers
    while count and not estimate_memory(model, tokens, range(count), budget).fits:
        count -= 1
    if count == 0:
        return []
    return sorted(set(np.linspace(0, layers - 1, count).round().astype(int).tolist()))


# --- the result -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    token: str
    id: int
    prob: float


@dataclass
class AttentionResult:
    """Attention of one text. ``weights[i]`` belongs to model layer ``layers[i]``."""

    model: str
    token_ids: list[int]
    tokens: list[str]
    weights: np.ndarray  # float32 (layers kept, heads, query, key)
    layers: tuple[int, ...]
    layer_kinds: tuple[str, ...]  # FULL | SLIDING per kept layer
    sliding_window: int | None
    kv_heads: int
    next_tokens: list[Prediction] = field(default_factory=list)
    forward_ms: float = 0.0
    memory: MemoryEstimate | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    def index(self, layer: int) -> int:
        """Row of ``weights`` holding model layer ``layer``."""
        try:
            return self.layers.index(layer)
        except ValueError:
            raise InvalidInputError(f"Layer {layer} was not kept; kept layers: {list(self.layers)}.") from None

    def head(self, layer: int, head: int) -> np.ndarray:
        """``(query, key)`` map of one head of model layer ``layer``."""
        if not 0 <= head < self.num_heads:
            raise InvalidInputError(f"Head {head} does not exist: heads are 0–{self.num_heads - 1}.")
        return self.weights[self.index(layer), head]

    def kind_label(self, layer: int) -> str:
        kind = self.layer_kinds[self.index(layer)]
        return f"sliding, window {self.sliding_window}" if kind == SLIDING else "full"

    def save_npz(self, file) -> None:
        """Write ``weights`` (float32 [layers, heads, query, key]), ``tokens``, ``token_ids``,
        ``layers`` and ``layer_kinds`` to a path or binary file object."""
        np.savez_compressed(
            file,
            weights=self.weights.astype(np.float32, copy=False),
            tokens=np.array(self.tokens, dtype=str),
            token_ids=np.array(self.token_ids, dtype=np.int64),
            layers=np.array(self.layers, dtype=np.int64),
            layer_kinds=np.array(self.layer_kinds, dtype=str),
            model=np.array(self.model),
        )

    def npz_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.save_npz(buf)
        return buf.getvalue()


def encode(model, text: str) -> list[int]:
    """Token ids of ``text`` as the model reads a plain prompt (special tokens as the tokenizer adds)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("The text is empty: type something to look at.")
    return list(model.tokenizer(text)["input_ids"])


def check_length(model, n: int) -> None:
    """Refuse 0 tokens, or more than the model reads (the message says the limit)."""
    if n < 1:
        raise InvalidInputError("There are no tokens to look at: type some text.")
    if n > model.context_length:
        raise InvalidInputError(
            f"The text is {n:,} tokens; {model.card.name} reads at most {model.context_length:,}. Shorten it."
        )


@contextmanager
def capture(model, layers: Sequence[int] | None = None,
            into: np.ndarray | None = None) -> Iterator[dict[int, list[np.ndarray]]]:
    """Record attention weights of the listed layers (all when None) while inside the block.

    Yields ``{layer: [array (heads, query, key) per forward call, ...]}``; with ``into`` (a float32
    ``(len(layers), heads, T, T)`` array) one forward's maps are copied straight into it instead,
    so no second copy of the weights exists. Holds ``model.lock``; forwards from other threads
    are not recorded."""
    _check_eager(model)
    modules = attention_modules(model.module)
    wanted = range(len(modules)) if layers is None else layers
    for i in wanted:
        if not 0 <= i < len(modules):
            raise InvalidInputError(f"Layer {i} does not exist: {model.card.name} has layers 0–{len(modules) - 1}.")
    owner = threading.get_ident()
    found: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
    row = {layer: r for r, layer in enumerate(wanted)}

    def hook_for(i):
        def hook(_module, _args, output):
            if threading.get_ident() != owner:
                return
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise WorkbenchError(
                    f"Layer {i} returned no attention weights: load the model with attn_implementation='eager'."
                )
            if into is not None:
                into[row[i]] = weights[0].detach().float().cpu().numpy()  # (heads, q, k)
            else:
                found[i].append(weights[0].detach().float().cpu().numpy())
        return hook

    with model.lock:
        handles = [modules[i].register_forward_hook(hook_for(i)) for i in wanted]
        try:
            yield found
        finally:
            for h in handles:
                h.remove()


def _top(model, logits: torch.Tensor, k: int) -> list[Prediction]:
    probs = torch.softmax(logits.float(), dim=-1)
    p, i = torch.topk(probs, min(k, probs.numel()))
    # each candidate on its own: they are alternatives, not a sequence
    return [Prediction(display_tokens(model.tokenizer, [j])[0], int(j), float(q))
            for j, q in zip(i.tolist(), p.tolist())]


def attention(
    model,
    text: str | None = None,
    *,
    ids: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    top_k: int = 5,
    budget_bytes: int | None = None,
) -> AttentionResult:
    """Attention of every head over ``text`` (or token ``ids``) in one eager forward pass.

    ``layers`` keeps only those model layers (all by default); the memory estimate is checked
    first and a run that would not fit raises ``InvalidInputError`` saying how long a text fits.
    ``next_tokens``: the model's top ``top_k`` next tokens after the text."""
    if ids is None:
        ids = encode(model, text or "")
    ids = [int(i) for i in ids]
    check_length(model, len(ids))
    shape = model_shape(model)
    keep = list(range(shape.layers)) if layers is None else sorted(set(int(i) for i in layers))
    if not keep:
        raise InvalidInputError("Pick at least one layer.")
    estimate = estimate_memory(model, len(ids), keep, budget_bytes)
    if not estimate.fits:
        fits = max_tokens_within(model, estimate.budget_bytes, len(keep))
        raise InvalidInputError(
            f"{estimate.describe()} That does not fit: shorten the text to about {fits:,} tokens, "
            "or keep fewer layers."
        )
    weights = np.empty((len(keep), shape.heads, len(ids), len(ids)), dtype=np.float32)  # (L, H, T, T)
    start = time.perf_counter()
    with capture(model, keep, into=weights), torch.inference_mode():
        out = model.module(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
    forward_ms = (time.perf_counter() - start) * 1000
    return AttentionResult(
        model=model.card.id,
        token_ids=ids,
        tokens=display_tokens(model.tokenizer, ids),
        weights=weights,
        layers=tuple(keep),
        layer_kinds=tuple(shape.layer_kinds[i] for i in keep),
        sliding_window=shape.sliding_window,
        kv_heads=shape.kv_heads,
        next_tokens=_top(model, out.logits[0, -1], top_k),
        forward_ms=forward_ms,
        memory=estimate,
    )


# --- summaries ------------------------------------------------------------------------------------

def mean_over_heads(weights: np.ndarray) -> np.ndarray:
    """``(layers, heads, q, k)`` -> ``(layers, q, k)``; rows still sum to 1."""
    return weights.mean(axis=1)


def rollout(weights: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) over the given layers, first to last.

    Each layer's head-mean map is mixed with the identity for the residual stream,
    ``A' = residual * I + (1 - residual) * A``, and the layers are multiplied:
    ``R = A'_L ... A'_1``. Returns ``(q, k)``; rows sum to 1."""
    n = weights.shape[-1]
    eye = np.eye(n, dtype=np.float32)
    result = eye.copy()
    for layer in mean_over_heads(weights):
        mixed = residual * eye + (1 - residual) * layer
        mixed /= mixed.sum(axis=-1, keepdims=True)
        result = mixed @ result
    return result


@dataclass(frozen=True)
class HeadStats:
    """Per head, ``(layers kept, heads)`` arrays averaged over query positions.

    ``entropy``: bits of each attention row (0 = all weight on one token). ``first_token``:
    weight on position 0 (queries 1.. only; query 0 can only look at itself). ``prev_token``:
    weight on the token just before the query (queries 1..)."""

    layers: tuple[int, ...]
    entropy: np.ndarray
    first_token: np.ndarray
    prev_token: np.ndarray

    METRICS = ("entropy", "first_token", "prev_token")


def head_stats(result: AttentionResult) -> HeadStats:
    """One layer at a time, so a long text needs no second copy of its weights."""
    w = result.weights
    L, H, T, _ = w.shape
    entropy = np.zeros((L, H), dtype=np.float64)
    for i in range(L):
        layer = w[i]
        plogp = np.zeros_like(layer)
        np.log2(layer, out=plogp, where=layer > 0)
        plogp *= layer
        entropy[i] = -plogp.sum(-1, dtype=np.float64).mean(-1)
    if T > 1:
        first = w[..., 1:, 0].mean(-1)
        q = np.arange(1, T)
        prev = w[..., q, q - 1].mean(-1)
    else:
        first = w[..., 0, 0]
        prev = np.zeros(w.shape[:2])
    return HeadStats(result.layers, entropy.astype(np.float32), first.astype(np.float32), prev.astype(np.float32))


# --- long inputs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reduced:
    """A map made small enough to draw. ``note`` says what was reduced ("" when nothing)."""

    matrix: np.ndarray  # (rows, cols)
    row_labels: list[str]
    col_labels: list[str]
    note: str


def position_labels(tokens: Sequence[str], start: int = 0) -> list[str]:
    """Unique axis labels ``"3 ␣the"``: plotly merges equal category labels, tokens repeat."""
    return [f"{start + i} {t}" for i, t in enumerate(tokens)]


def _block_labels(tokens: Sequence[str], edges: np.ndarray) -> list[str]:
    labels = []
    for a, b in zip(edges[:-1], edges[1:]):
        a, b = int(a), int(b)
        labels.append(f"{a} {tokens[a]}" if b - a == 1 else f"{a}–{b - 1} {tokens[a]}…{tokens[b - 1]}")
    return labels


def downsample(matrix: np.ndarray, tokens: Sequence[str], max_size: int = 64) -> Reduced:
    """Shrink a ``(T, T)`` map to at most ``max_size`` blocks a side by block averaging.

    Cell (i, j) is the mean over the queries of block i of the total weight they give the keys
    of block j, so rows still sum to 1."""
    n = matrix.shape[-1]
    if n <= max_size:
        labels = position_labels(tokens)
        return Reduced(matrix, labels, labels, "")
    edges = np.linspace(0, n, max_size + 1).round().astype(int)
    summed = np.add.reduceat(np.add.reduceat(matrix, edges[:-1], axis=1), edges[:-1], axis=0)
    counts = np.diff(edges)[:, None]
    labels = _block_labels(tokens, edges)
    size = n / max_size
    note = (f"{n} tokens drawn as {max_size}×{max_size} blocks of about {size:.1f} tokens: a cell is the "
            "mean over the block's queries of their total weight on the block's keys.")
    return Reduced((summed / counts).astype(np.float32), labels, labels, note)


@dataclass(frozen=True)
class Edges:
    """The ``k`` strongest keys of every query of a ``(T, T)`` map, as parallel arrays."""

    query: np.ndarray
    key: np.ndarray
    weight: np.ndarray
    kept_share: float  # weight kept / total weight
    note: str


def top_k_edges(matrix: np.ndarray, k: int = 5) -> Edges:
    n = matrix.shape[-1]
    k = max(1, min(k, n))
    keys = np.argpartition(-matrix, k - 1, axis=-1)[:, :k]  # (T, k)
    weight = np.take_along_axis(matrix, keys, axis=-1)
    query = np.repeat(np.arange(n), k)
    keep = weight.reshape(-1) > 0
    total = float(matrix.sum()) or 1.0
    share = float(weight.sum()) / total
    note = (f"{n} tokens: showing the {k} strongest keys of each query ({keep.sum():,} of {n * n:,} cells), "
            f"which hold {share:.0%} of the attention.")
    return Edges(query[keep], keys.reshape(-1)[keep], weight.reshape(-1)[keep].astype(np.float32), share, note)


# --- attention while generating -------------------------------------------------------------------

@dataclass
class GenerationAttention:
    """For each generated token, the attention row of the query that predicted it.

    Step ``s`` predicted ``tokens[prompt_len + s]``; its row ``rows[s]`` is
    ``(layers, heads, prompt_len + s)``: the weights of the query at position
    ``prompt_len + s - 1`` over every key up to it (the same numbers a plain forward over the
    whole sequence puts in that row)."""

    model: str
    token_ids: list[int]
    tokens: list[str]
    prompt_len: int
    rows: list[np.ndarray]
    layer_kinds: tuple[str, ...]

    @property
    def steps(self) -> int:
        return len(self.rows)

    @property
    def generated(self) -> list[str]:
        return self.tokens[self.prompt_len:]

    def step(self, s: int, layer: int) -> np.ndarray:
        """``(heads, prompt_len + s)`` weights of one layer at step ``s``."""
        if not 0 <= s < self.steps:
            raise InvalidInputError(f"Step {s} does not exist: there are {self.steps} generated tokens.")
        return self.rows[s][layer]

    def as_matrix(self, layer: int, head: int) -> np.ndarray:
        """``(steps, total keys)``: every step's row for one head, zero-padded on the right."""
        width = self.prompt_len + self.steps - 1
        out = np.zeros((self.steps, width), dtype=np.float32)
        for s, row in enumerate(self.rows):
            out[s, : row.shape[-1]] = row[layer, head]
        return out


class RecordingBackend:
    """A torch backend for ``workbench.generation`` that records, at every step, the attention
    row of the last position fed. Use one per generation (it keeps the rows)."""

    name = "torch-attention"

    def __init__(self, model):
        _check_eager(model)
        self.model = model
        self.module = model.module
        self.device = model.device
        self.rows: list[np.ndarray] = []
        self._found: dict[int, list[np.ndarray]] | None = None

    def _record(self) -> None:
        last = [self._found[i].pop()[:, -1, :] for i in sorted(self._found)]  # each (heads, key)
        self.rows.append(np.stack(last).astype(np.float32))

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor):
        # A cache without per-layer window trimming keeps every key, so rows have full length.
        cache = DynamicCache()
        out = self.module(input_ids=input_ids.to(self.device), past_key_values=cache, use_cache=True, logits_to_keep=1)
        self._record()
        return out.logits[0, -1].float(), (out.past_key_values, input_ids.shape[1])

    @torch.inference_mode()
    def step(self, token_id: int, state):
        cache, length = state
        ids = torch.tensor([[token_id]], device=self.device)
        pos = torch.tensor([length], device=self.device)
        out = self.module(input_ids=ids, past_key_values=cache, use_cache=True, cache_position=pos, logits_to_keep=1)
        self._record()
        return out.logits[0, -1].float(), (out.past_key_values, length + 1)

    def synchronize(self) -> None:
        if str(self.device).startswith("cuda"):
            torch.cuda.synchronize()

    @contextmanager
    def recording(self):
        with capture(self.model) as found:
            self._found = found
            try:
                yield self
            finally:
                self._found = None


def generation_attention(model, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> GenerationAttention:
    """Replay a finished generation through the KV cache, one token at a time, recording each
    generated token's attention row (``GenerationAttention``)."""
    prompt_ids, token_ids = [int(i) for i in prompt_ids], [int(i) for i in token_ids]
    if not token_ids:
        raise InvalidInputError("The generation has no new tokens to show: generate at least one.")
    check_length(model, len(prompt_ids) + len(token_ids))
    backend = RecordingBackend(model)
    with backend.recording():
        _, state = backend.prefill(torch.tensor([prompt_ids]))
        for t in token_ids[:-1]:
            _, state = backend.step(t, state)
    ids = prompt_ids + token_ids
    return GenerationAttention(model.card.id, ids, display_tokens(model.tokenizer, ids), len(prompt_ids),
                               backend.rows, model_shape(model).layer_kinds)


def generate_with_attention(model, prompt, **settings):
    """Generate (``workbench.generation`` settings) and record attention while it runs.
    Returns ``(GenerationResult, GenerationAttention)``."""
    from .generation import Generation

    backend = RecordingBackend(model)
    with backend.recording():
        result = Generation(model, prompt, backend=backend, **settings).run()
    ids = list(result.prompt_ids) + list(result.token_ids)
    rows = backend.rows[: len(result.token_ids)]  # a step fed after an EOS has no token to predict
    return result, GenerationAttention(model.card.id, ids, display_tokens(model.tokenizer, ids),
                                       len(result.prompt_ids), rows, model_shape(model).layer_kinds)


def save_npz(result: AttentionResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save_npz(path)
    return path
