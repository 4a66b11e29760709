"""A stream ends with exactly the non-streamed text: a tail held back as a possible stop-string
prefix, or an incomplete UTF-8 character, comes in the last chunk at a "length" or end-of-text
finish; a tokenizer whose decode is not prefix-stable does not silence the stream. An engine
that generates a chosen token sequence makes each case exact."""
from __future__ import annotations

import pytest
import torch

from workbench.serve.batching import Batcher
from workbench.serve.sampling import SamplingParams

openai = pytest.importorskip("openai")

MODEL = "tiny-llama"  # it has a chat template, so both routes serve it


class Scripted:
    """An engine whose every row generates ``script`` (token ids) in order, whatever its prompt."""

    batched = True

    def __init__(self, vocab: int, script: list[int]):
        self.vocab, self.script, self.counts = vocab, list(script), []

    def _logits(self, k: int) -> torch.Tensor:
        row = torch.zeros(self.vocab)  # (V,)
        row[self.script[min(k, len(self.script) - 1)]] = 1.0
        return row

    def start(self, prompts):
        return len(prompts)

    def advance(self, rows, columns=None):
        self.counts += [0] * rows
        return torch.stack([self._logits(0) for _ in range(rows)])  # (N, V)

    def add(self, prompt_ids):
        return self.advance(1)[0]

    def step(self, token_ids):
        self.counts = [c + 1 for c in self.counts]
        return torch.stack([self._logits(c) for c in self.counts])  # (B, V)

    def remove(self, rows):
        drop = set(rows)
        self.counts = [c for i, c in enumerate(self.counts) if i not in drop]

    def reset(self):
        self.counts = []


class Unstable:
    """A tokenizer whose decode drops the first character once it decodes 3 ids or more: later
    text no longer extends the earlier (as a clean-up of spaces or a leading-space rule can)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def decode(self, ids, **kw):
        text = self.tokenizer.decode(ids, **kw)
        return text[1:] if len(ids) >= 3 else text


def _encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _cases(tok, eos: int) -> dict:
    """name -> (script, stop strings, max_tokens, the text both answers must have)."""
    e_acute = _encode(tok, "é")
    assert len(e_acute) == 2  # two byte tokens: after the first, the character is incomplete
    wor = _encode(tok, "hello wor")
    return {
        "stop prefix held at a length finish": (wor, ["world"], len(wor), "hello wor"),
        "stop prefix held at end-of-text": (wor + [eos], ["world"], 64, "hello wor"),
        "stop string cuts the text": (_encode(tok, "hello world again"), ["world"], 64, "hello "),
        "character cut by the length": (_encode(tok, "caf") + e_acute[:1], [], len(_encode(tok, "caf")) + 1,
                                        "caf\ufffd"),
        "multi-byte characters whole": (_encode(tok, "café au lait é") + [eos], [], 64, "café au lait é"),
        "multi-byte character then a held stop prefix": (_encode(tok, "née EN") + [eos], ["END"], 64, "née EN"),
    }


@pytest.fixture
def model(tiny_store):
    from workbench.runtime.loading import load_model

    return load_model(MODEL, store=tiny_store, device="cpu")


def _run(model, script, stop, max_tokens, tokenizer=None):
    b = Batcher(model, Scripted(len(model.tokenizer), script))
    if tokenizer is not None:
        b.tokenizer = tokenizer
    try:
        return b.run(_encode(model.tokenizer, "Hi"), SamplingParams(max_tokens=max_tokens, stop=tuple(stop)))
    finally:
        b.close()


@pytest.mark.parametrize("case", ["stop prefix held at a length finish", "stop prefix held at end-of-text",
                                  "stop string cuts the text", "character cut by the length",
                                  "multi-byte characters whole", "multi-byte character then a held stop prefix"])
def test_token_texts_and_the_tail_are_exactly_the_text(model, case):
    script, stop, max_tokens, want = _cases(model.tokenizer, min(model.eos_token_ids))[case]
    tokens, done = _run(model, script, stop, max_tokens)
    assert done.text == want
    assert "".join(t.text for t in tokens) + done.tail == done.text
    assert all("\ufffd" not in t.text for t in tokens)  # an incomplete character is never streamed


def test_a_prefix_stable_decode_gives_exactly_the_decoded_ids(model):
    script = _encode(model.tokenizer, "café au lait, hello world again")
    _, done = _run(model, script, [], len(script))
    assert done.text == model.tokenizer.decode(script, skip_special_tokens=True)


def test_a_decode_that_is_not_prefix_stable_does_not_silence_the_stream(model):
    script = _encode(model.tokenizer, "hello world again and again")
    tokens, done = _run(model, script, [], len(script), tokenizer=Unstable(model.tokenizer))
    pieces = [t.text for t in tokens]
    assert "".join(pieces) + done.tail == done.text
    assert done.text.startswith(model.tokenizer.decode(script[:2]))  # what was sent stays
    assert done.text.endswith("again and again")  # later tokens' text kept coming
    assert all(pieces[3:])  # every token after the decode changed had text to send


# --- the same through the HTTP routes, with the real openai client --------------------------


@pytest.fixture
def served(start_server, api_key):
    server = start_server([MODEL])
    batcher = server.registry.get(MODEL)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key, timeout=60, max_retries=0)
    return batcher, client


def _both(client, route: str, stop, max_tokens) -> tuple[str, str, str, str]:
    """(non-streamed text, its finish, the stream's concatenated text, the stream's finish)."""
    kw = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0, "stop": stop or None}
    if route == "completions":
        plain = client.completions.create(prompt="Hi", **kw).choices[0]
        chunks = [c for c in client.completions.create(prompt="Hi", stream=True, **kw) if c.choices]
        return (plain.text, plain.finish_reason, "".join(c.choices[0].text for c in chunks),
                chunks[-1].choices[0].finish_reason)
    messages = [{"role": "user", "content": "Hi"}]
    plain = client.chat.completions.create(messages=messages, **kw).choices[0]
    chunks = [c for c in client.chat.completions.create(messages=messages, stream=True, **kw) if c.choices]
    return (plain.message.content, plain.finish_reason, "".join(c.choices[0].delta.content or "" for c in chunks),
            chunks[-1].choices[0].finish_reason)


@pytest.mark.parametrize("route", ["completions", "chat"])
@pytest.mark.parametrize("case", ["stop prefix held at a length finish", "stop prefix held at end-of-text",
                                  "character cut by the length", "multi-byte character then a held stop prefix"])
def test_a_stream_ends_with_exactly_the_non_streamed_text(served, route, case):
    batcher, client = served
    script, stop, max_tokens, want = _cases(batcher.tokenizer, min(batcher.eos))[case]
    batcher.engine = Scripted(len(batcher.tokenizer), script)  # the batcher is idle between requests
    plain, plain_finish, streamed, stream_finish = _both(client, route, stop, max_tokens)
    assert plain == want and streamed == plain
    assert stream_finish == plain_finish == ("length" if "length" in case else "stop")


@pytest.mark.parametrize("route", ["completions", "chat"])
def test_a_stream_with_a_decode_that_is_not_prefix_stable_ends_with_the_text(served, route):
    batcher, client = served
    script = _encode(batcher.tokenizer, "hello world again and again")
    batcher.engine = Scripted(len(batcher.tokenizer), script)
    batcher.tokenizer = Unstable(batcher.tokenizer)
    plain, _, streamed, _ = _both(client, route, [], len(script))
    assert streamed == plain and plain.endswith("again and again")
