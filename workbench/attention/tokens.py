"""Tokens as a person reads them: the bytes each token stands for, decoded across token
boundaries, with spaces, newlines and control characters made visible (``␣ ↵ ⇥``). Works on any
Hugging Face tokenizer (byte-level BPE, sentencepiece with byte fallback); needs no model."""
from __future__ import annotations

import codecs
import json
import re
from typing import Sequence

VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


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
