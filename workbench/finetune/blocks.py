"""Token blocks for training and evaluation: documents rendered (chat through the model's
template), tokenized, joined with the end-of-text token and cut into blocks of ``seq_length``.

A document longer than ``seq_length`` is not truncated: it runs on into the next blocks (packing),
so every token is trained on. The tail shorter than a block is dropped. Labels are the inputs
(the model shifts them); there is no padding, so no mask is needed.
"""
from __future__ import annotations

import random

import torch

from ..data.formats import render
from ..errors import DatasetFormatError


def token_stream(tokenizer, documents, limit: int | None = None) -> list[int]:
    """Token ids of the documents joined by end-of-text; stops once ``limit`` ids are collected."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for doc in documents:
        ids.extend(tokenizer(render(doc, tokenizer), add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(int(eos))
        if limit is not None and len(ids) >= limit:
            break
    return ids[:limit] if limit is not None else ids


def pack(ids: list[int], seq_length: int) -> torch.Tensor:
    """(N, seq_length) int64 blocks of consecutive tokens."""
    n = len(ids) // seq_length
    return torch.tensor(ids[: n * seq_length], dtype=torch.long).view(n, seq_length)


class Blocks(torch.utils.data.Dataset):
    """The ``Trainer``'s dataset: ``{"input_ids", "labels"}`` per block."""

    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def build_blocks(tokenizer, dataset, seq_length: int, need_train: int | None, eval_tokens: int, seed: int):
    """``(train Blocks, eval Blocks)``. ``need_train`` (blocks) caps how much is tokenized; the
    training blocks are shuffled with ``seed`` (evaluation blocks keep their order)."""
    docs = list(dataset.train)
    random.Random(seed).shuffle(docs)  # whole documents, so a short run sees more than one play
    limit = None if need_train is None else (need_train + 1) * seq_length * 4
    train = pack(token_stream(tokenizer, docs, limit), seq_length)
    held = pack(token_stream(tokenizer, dataset.eval, max(eval_tokens, seq_length)), seq_length)
    if len(train) < 1:
        raise DatasetFormatError(
            f"{dataset.id} gives fewer than {seq_length} training tokens: add text, or lower the "
            "sequence length."
        )
    if len(held) < 1:
        raise DatasetFormatError(
            f"The held-out part of {dataset.id} has fewer than {seq_length} tokens, too few to measure "
            "the eval loss: add text or lower the sequence length."
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return Blocks(train[order]), Blocks(held)
