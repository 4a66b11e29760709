"""Apps are models to the server: listed by ``GET /v1/models``, answered through
``/v1/chat/completions``, ``/v1/completions`` and ``/api/generate`` with the app's instructions,
settings (the request's values win) and retrieval, ``citations`` beside the answer; apps on one base
share its batcher. Tiny models, a tiny app saved with ``save_app`` and a small knowledge file."""
from __future__ import annotations

import pytest
import requests

from workbench.apps.card import parse_app_card
from workbench.apps.catalog import remove_app, save_app
from workbench.serve.errors import BadRequestError, ModelNotServedError
from workbench.serve.registry import ModelRegistry

openai = pytest.importorskip("openai")

HANDBOOK = "# Club\n\n## Hours\nOpens at 5:45.\n\n## Fees\nStudents pay 90 crowns.\n"
QUESTION = "How much do students pay?"
TIMEOUT = 60


@pytest.fixture
def store(tiny_store, long_chat_dir, tmp_path):
    tiny_store.add("tiny-long-chat", local_dir=long_chat_dir)
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)
    tiny_store.handbook = handbook
    make(tiny_store, "club")
    return tiny_store


def make(store, app_id, base="tiny-long-chat", **generation):
    data = {"id": app_id, "base_model": base, "instructions": "Be brief.",
            "generation": {"max_new_tokens": 5, **generation}, "knowledge": {"passages": 1}}
    save_app(store, parse_app_card(data), [store.handbook])


@pytest.fixture
def served(start_server, store, api_key):
    s = start_server(["tiny-long-chat", "tiny-gpt2"])
    s.key = api_key
    s.client = openai.OpenAI(base_url=f"{s.url}/v1", api_key=api_key, timeout=TIMEOUT, max_retries=0)
    return s


def chat(served, app_id=None, **kw):
    return served.client.chat.completions.create(
        model=app_id or "club", messages=[{"role": "user", "content": QUESTION}], **kw)


# --- the registry --------------------------------------------------------------------------------

def test_apps_on_one_base_share_its_batcher(store):
    make(store, "club-two")
    make(store, "elsewhere", base="tiny-gemma3")
    registry = ModelRegistry(store, ["tiny-long-chat", "tiny-gpt2"])
    try:
        assert registry.app_ids() == ["club", "club-two"]  # tiny-gemma3 is not served here
        assert registry.app_base("club") == "tiny-long-chat" and registry.app_base("tiny-long-chat") is None
        base = registry.get("tiny-long-chat")
        assert registry.get("club") is base and registry.get("club-two") is base
        assert list(registry.batchers) == ["tiny-long-chat"]
        with pytest.raises(ModelNotServedError, match="does not serve; start the server with it"):
            registry.get("elsewhere")
        with pytest.raises(ModelNotServedError, match="apps: club, club-two"):
            registry.get("nobody")
    finally:
        registry.close()


def test_the_app_listing_follows_the_store(store, tiny_model_dirs):
    registry = ModelRegistry(store)  # every installed model that can generate
    try:
        assert "club" in registry.app_ids()
        make(store, "late")
        assert "late" in registry.app_ids()
        remove_app(store, "late")
        assert "late" not in registry.app_ids()
        store.add("club", local_dir=tiny_model_dirs["gpt2"])  # a model takes an app's id later: it wins
        assert "club" in registry.ids() and "club" not in registry.app_ids()
        assert registry.app_base("club") is None
    finally:
        registry.close()


def test_an_app_turn_keeps_the_apps_instructions_first(store):
    from workbench.runtime.loading import load_model
    from workbench.serve.prompting import app_turn

    model = load_model("tiny-long-chat", store=store)
    turn = app_turn(store, "club", model, [{"role": "system", "content": "Talk like a pirate."},
                                           {"role": "user", "content": QUESTION}], {"max_new_tokens": 3})
    assert turn.prepared.messages[0]["content"].startswith("Be brief.\n\nTalk like a pirate.\n\n")
    assert turn.prepared.settings["max_new_tokens"] == 3 and len(turn.ids) == turn.prepared.prompt_tokens
    with pytest.raises(BadRequestError, match="must be the user's"):
        app_turn(store, "club", model, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], {})


# --- over HTTP, with the real openai client --------------------------------------------------------

def test_apps_are_listed_beside_the_models(served, store):
    make(store, "elsewhere", base="tiny-gemma3")  # its base is not served: left out
    rows = {m.id: m for m in served.client.models.list()}
    assert sorted(rows) == ["club", "tiny-gpt2", "tiny-long-chat"]
    assert rows["club"].model_extra == {"kind": "app", "base_model": "tiny-long-chat"}
    assert rows["tiny-gpt2"].model_extra == {"kind": "model"}


def test_chat_applies_the_app_and_cites_its_passage(served, store):
    app = store.app("club")
    expected = app.chat(QUESTION)
    prepared = app.prepare(QUESTION)
    r = chat(served)
    assert r.model == "club"
    assert r.choices[0].message.content.strip() == expected.text  # the card's temperature 0: greedy
    assert r.usage.prompt_tokens == prepared.prompt_tokens  # instructions and passage in the prompt
    (c,) = r.model_extra["citations"]
    assert c == prepared.citations[0].to_json() and c["heading"] == "Club > Fees"
    assert app.knowledge_text(c["file"])[c["start"]:c["end"]] == c["text"] == "Students pay 90 crowns."


def test_the_apps_settings_apply_and_the_requests_win(served, store):
    card = chat(served, extra_body={"ignore_eos": True})
    assert card.usage.completion_tokens == 5 and card.choices[0].finish_reason == "length"  # not OpenAI's 256
    asked = chat(served, max_tokens=3, extra_body={"ignore_eos": True})
    assert asked.usage.completion_tokens == 3
    make(store, "club-var", temperature=1.0, seed=3, max_new_tokens=12)  # sampled, repeatable by its seed
    full = chat(served, "club-var", extra_body={"ignore_eos": True}).choices[0].message.content
    assert chat(served, "club-var", extra_body={"ignore_eos": True}).choices[0].message.content == full
    greedy = chat(served, "club-var", temperature=0, extra_body={"ignore_eos": True}).choices[0].message.content
    assert greedy == chat(served, max_tokens=12, extra_body={"ignore_eos": True}).choices[0].message.content
    assert greedy != full  # the request's temperature replaced the card's
    stop = full[1:3]
    other = next(full[j:j + 2] for j in range(3, len(full) - 1) if full.find(full[j:j + 2]) > full.find(stop))
    make(store, "club-stop", temperature=1.0, seed=3, max_new_tokens=12, stop=[stop])
    r = chat(served, "club-stop", extra_body={"ignore_eos": True})
    assert r.choices[0].message.content == full[:full.find(stop)] and r.choices[0].finish_reason == "stop"
    r = chat(served, "club-stop", stop=[other], extra_body={"ignore_eos": True})  # the request's stop replaces
    assert r.choices[0].message.content == full[:full.find(other)]


def test_a_streamed_answer_carries_its_citations_on_the_last_chunk(served):
    plain = chat(served)
    chunks = list(chat(served, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert last.model_extra["citations"] == plain.model_extra["citations"]
    assert all("citations" not in c.model_extra for c in chunks if c is not last)


def test_completions_put_the_prompt_to_the_app(served, store):
    r = served.client.completions.create(model="club", prompt=QUESTION)
    assert r.choices[0].text.strip() == store.app("club").chat(QUESTION).text
    assert r.model_extra["citations"][0]["heading"] == "Club > Fees"
    chunks = list(served.client.completions.create(model="club", prompt=QUESTION, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].model_extra["citations"] == r.model_extra["citations"]
    plain = served.client.completions.create(model="tiny-gpt2", prompt=QUESTION, max_tokens=2)
    assert "citations" not in plain.model_extra  # models answer as before


def test_an_app_on_a_model_without_chat_template(served, store):
    make(store, "plain-club", base="tiny-gpt2")
    prepared = store.app("plain-club").prepare(QUESTION)
    r = chat(served, "plain-club", extra_body={"ignore_eos": True})
    assert r.usage.prompt_tokens == prepared.prompt_tokens and r.usage.completion_tokens == 5
    assert r.model_extra["citations"][0]["heading"] == "Club > Fees"


def test_generate_answers_with_an_app(served, store):
    url, headers = f"{served.url}/api/generate?model=club", {"Authorization": f"Bearer {served.key}"}
    body = requests.post(url, headers=headers, data={"text": QUESTION}, timeout=TIMEOUT).json()
    assert body["model"] == "club" and body["generated_text"].strip() == store.app("club").chat(QUESTION).text
    assert body["citations"] == [c.to_json() for c in store.app("club").prepare(QUESTION).citations]
    short = requests.post(url, headers=headers, data={"text": QUESTION, "max_new_tokens": "2", "ignore_eos": "true"},
                          timeout=TIMEOUT).json()
    assert short["usage"]["completion_tokens"] == 2


def test_unknown_and_unserved_ids_say_what_is_served(served, store):
    make(store, "elsewhere", base="tiny-gemma3")
    with pytest.raises(openai.NotFoundError, match="apps: club"):
        chat(served, "nobody")
    with pytest.raises(openai.NotFoundError, match="workbench serve tiny-gemma3"):
        chat(served, "elsewhere")
    with pytest.raises(openai.BadRequestError, match="must be the user's"):
        served.client.chat.completions.create(model="club", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        chat(served, temperature=5)
    assert chat(served).model_extra["citations"]  # the server goes on
