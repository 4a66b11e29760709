"""Token blocks for training and evaluation: documents tokenized with a per-token loss mask,
joined with the end-of-text token and cut into blocks of ``seq_length``.

What the loss counts (as LLaMA-Factory and TRL do by default):

- plain text: every token;
- a prompt and its completion (Alpaca): only the completion's tokens and the end-of-text after
  it; the prompt's labels are -100;
- chat messages: only the assistant turns (each as the chat template renders it, its end-of-turn
  marker included); system and user turns, and the template's headers, are -100. The turns are
  found by rendering the conversation up to each assistant turn (``add_generation_prompt``) and
  tokenizing the pieces one by one, as LLaMA-Factory does; a template whose shorter renderings
  are not prefixes of the longer ones gives no boundaries, and that conversation is trained
  whole (counted in ``BlockData.unmasked_documents``).

A document longer than ``seq_length`` is not truncated: it runs on into the next blocks (packing),
so every token is seen. The tail shorter than a block is dropped, and so is a block in which the
loss would count no token (all prompt). No padding, so no attention mask is needed; the model
shifts the labels itself (the label at position t is the target of position t - 1).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..data.formats import is_pair, render
from ..errors import DatasetFormatError

IGNORE = -100  # the label torch's cross-entropy skips


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _chat_pieces(tokenizer, messages: list[dict]) -> list[tuple[str, bool]] | None:
    """``[(text, trained), ...]`` whose texts join to the rendered conversation; ``None`` when
    the template's renderings do not extend one another."""
    def chat(msgs, prompt=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt) if msgs else ""

    render(messages, tokenizer)  # the error that names the fix when there is no template
    pieces, done = [], ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, upto = chat(messages[:i], prompt=True), chat(messages[: i + 1])
        if not prompt.startswith(done) or not upto.startswith(prompt):
            return None
        pieces += [(prompt[len(done):], False), (upto[len(prompt):], True)]
        done = upto
    whole = chat(messages)
    if not whole.startswith(done):
        return None
    return pieces + [(whole[len(done):], False)]


def encode(tokenizer, doc) -> tuple[list[int], list[bool], bool]:
    """``(ids, trained, masked)`` of one document: its token ids, whether the loss counts each,
    and whether a prompt mask was applied (False for plain text and for an unsplittable chat)."""
    if isinstance(doc, str):
        ids = _ids(tokenizer, doc)
        return ids, [True] * len(ids), False
    if is_pair(doc):
        pieces = [(doc["prompt"], False), (doc["completion"], True)]
    else:
        pieces = _chat_pieces(tokenizer, doc)
        if pieces is None:
            ids = _ids(tokenizer, render(doc, tokenizer))
            return ids, [True] * len(ids), False
    ids, trained = [], []
    for text, counts in pieces:
        piece = _ids(tokenizer, text)
        ids += piece
        trained += [counts] * len(piece)
    return ids, trained, True


@dataclass
class Stream:
    """Token ids of documents joined by end-of-text, with the loss mask; how many documents had
    a prompt mask applied and how many could not (chat templates that give no boundaries)."""

    ids: list[int]
    trained: list[bool]
    masked_documents: int = 0
    unmasked_documents: int = 0


def labelled_stream(tokenizer, documents, limit: int | None = None) -> Stream:
    """The documents encoded and joined by end-of-text (which the loss counts when the document's
    last token does: a model learns where a response ends); stops once ``limit`` ids are collected."""
    eos = tokenizer.eos_token_id
    out = Stream([], [])
    for doc in documents:
        ids, trained, masked = encode(tokenizer, doc)
        out.ids += ids
        out.trained += trained
        if masked:
            out.masked_documents += 1
        elif not isinstance(doc, str):
            out.unmasked_documents += 1
        if eos is not None:
            out.ids.append(int(eos))
            out.trained.append(trained[-1] if trained else False)
        if limit is not None and len(out.ids) >= limit:
            break
    if limit is not None:
        out.ids, out.trained = out.ids[:limit], out.trained[:limit]
    return out


def token_stream(tokenizer, documents, limit: int | None = None) -> list[int]:
    """Token ids of the documents joined by end-of-text; stops once ``limit`` ids are collected."""
    return labelled_stream(tokenizer, documents, limit).ids


def pack(ids: list[int], seq_length: int) -> torch.Tensor:
    """(N, seq_length) int64 blocks of consecutive tokens."""
    n = len(ids) // seq_length
    return torch.tensor(ids[: n * seq_length], dtype=torch.long).view(n, seq_length)


def pack_labelled(stream: Stream, seq_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, labels)``, each (N, seq_length) int64; labels are the ids, -100 where the loss
    does not count. Blocks with no counted target (positions 1.. all -100) are left out."""
    ids = pack(stream.ids, seq_length)
    keep = pack([int(t) for t in stream.trained], seq_length).bool()  # (N, seq_length)
    labels = torch.where(keep, ids, torch.full_like(ids, IGNORE))
    useful = keep[:, 1:].any(dim=1)  # position 0's label is never a target after the shift
    return ids[useful], labels[useful]


class Blocks(torch.utils.data.Dataset):
    """The ``Trainer``'s dataset: ``{"input_ids", "labels"}`` per block."""

    def __init__(self, blocks: torch.Tensor, labels: torch.Tensor | None = None):
        self.blocks = blocks
        self.labels = blocks if labels is None else labels

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.blocks[i], "labels": self.labels[i]}

    @property
    def trained_share(self) -> float:
        """The share of target positions the loss counts (1.0 for plain text)."""
        targets = self.labels[:, 1:]
        return float((targets != IGNORE).float().mean()) if targets.numel() else 0.0


def build_blocks(tokenizer, dataset, seq_length: int, need_train: int | None, eval_tokens: int, seed: int):
    """``(train Blocks, eval Blocks, facts)``. ``need_train`` (blocks) caps how much is tokenized;
    the training blocks are shuffled with ``seed`` (evaluation blocks keep their order). ``facts``
    says what the loss counts, for the job's log."""
    docs = list(dataset.train)
    random.Random(seed).shuffle(docs)  # whole documents, so a short run sees more than one play
    limit = None if need_train is None else (need_train + 1) * seq_length * 4
    train_stream = labelled_stream(tokenizer, docs, limit)
    held_stream = labelled_stream(tokenizer, dataset.eval, max(eval_tokens, seq_length))
    train, held = pack_labelled(train_stream, seq_length), pack_labelled(held_stream, seq_length)
    masked = train_stream.masked_documents > 0
    if len(train[0]) < 1:
        raise DatasetFormatError(
            f"{dataset.id} gives fewer than {seq_length} training tokens"
            + (" with a response in them" if masked else "") + ": add text, or lower the sequence length."
        )
    if len(held[0]) < 1:
        raise DatasetFormatError(
            f"The held-out part of {dataset.id} has fewer than {seq_length} tokens"
            + (" with a response in them" if masked else "")
            + ", too few to measure the eval loss: add text or lower the sequence length."
        )
    order = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(seed))
    train_blocks, eval_blocks = Blocks(train[0][order], train[1][order]), Blocks(*held)
    facts = {
        "loss_on": "responses" if masked else "all tokens",
        "masked_documents": train_stream.masked_documents + held_stream.masked_documents,
        "unmasked_documents": train_stream.unmasked_documents + held_stream.unmasked_documents,
        "trained_share": round(train_blocks.trained_share, 4),
    }
    return train_blocks, eval_blocks, facts
