"""The real ``openai`` client against the server: completions and chat, streaming and not, and
logprobs equal to the model's own distribution (what the Generate page shows)."""
from __future__ import annotations

import math

import pytest

openai = pytest.importorskip("openai")


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, timeout=60, max_retries=0)


def _reference(tiny_store, name, prompt, n, chat=False):
    from workbench.runtime.loading import load_model

    model = load_model(name, store=tiny_store, device="cpu")
    return model.generate(prompt, max_new_tokens=n, chat=chat, stop_at_eos=False)


def test_models_are_listed(client):
    assert sorted(m.id for m in client.models.list()) == ["tiny-gpt2", "tiny-llama"]


def test_completion_with_logprobs_matches_the_models_distribution(client, tiny_store):
    prompt = "The capital of France is"
    r = client.completions.create(model="tiny-gpt2", prompt=prompt, max_tokens=8, temperature=0, logprobs=3,
                                  extra_body={"ignore_eos": True})
    ref = _reference(tiny_store, "tiny-gpt2", prompt, 8)
    choice = r.choices[0]
    assert choice.text == ref.text and choice.finish_reason == "length"
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens == len(ref.prompt_ids)
    lp = choice.logprobs
    assert len(lp.token_logprobs) == 8
    for got, tok in zip(lp.token_logprobs, ref.tokens):
        assert got == pytest.approx(math.log(tok.prob), abs=1e-4)
    for top, tok in zip(lp.top_logprobs, ref.tokens):
        assert 1 <= len(top) <= 3  # a dict by token text: pieces of one character can collide
        assert max(top.values()) == pytest.approx(math.log(tok.top[0].prob), abs=1e-4)


def test_streamed_completion_equals_the_plain_one(client):
    kw = {"model": "tiny-gpt2", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}
    plain = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_chat_plain_and_streamed_with_logprobs(client, tiny_store):
    messages = [{"role": "user", "content": "The capital of France is"}]
    r = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=6, temperature=0,
                                       logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True})
    ref = _reference(tiny_store, "tiny-llama", "The capital of France is", 6, chat=True)
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content == ref.text
    content = r.choices[0].logprobs.content
    assert len(content) == 6 and all(len(c.top_logprobs) == 2 for c in content)
    assert [c.logprob for c in content] == pytest.approx([math.log(t.prob) for t in ref.tokens], abs=1e-4)
    stream = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=6, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ref.text
    assert chunks[-1].usage.completion_tokens == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_seeded_sampling_repeats_and_stop_strings_apply(client):
    kw = {"model": "tiny-gpt2", "prompt": "Once upon a time", "max_tokens": 10, "temperature": 1.0, "top_p": 0.9,
          "seed": 7}
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text
    full = client.completions.create(model="tiny-gpt2", prompt="Hello", max_tokens=20, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = full[4:6]
    cut = client.completions.create(model="tiny-gpt2", prompt="Hello", max_tokens=20, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True}).choices[0]
    assert cut.text == full[: full.index(stop)] and cut.finish_reason == "stop"


def test_errors_reach_the_client_as_openai_errors(client, server):
    with pytest.raises(openai.NotFoundError, match="tiny-llama"):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.completions.create(model="tiny-gpt2", prompt="x", max_tokens=2, n=2)
    with pytest.raises(openai.BadRequestError, match="base model"):
        client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wb-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
