"""Token ids of a request's prompt, and the bounds on prompt and ``max_tokens``.

Completions tokenize the text as ``workbench generate`` does (the tokenizer's special tokens
added); chats go through the model's own chat template with the assistant turn opened. Both check
that prompt + ``max_tokens`` fit the model's context, with the numbers in the message.

For an app, ``app_turn`` hands the request's messages to the app (``App.prepare``: its
instructions, examples, the passages retrieved for the last user message, all within the base
model's context) and returns the ``Prepared`` turn with the token ids of its exact prompt. It
reads files (the app's card and index) and tokenizes: call it off the event loop.
"""
from __future__ import annotations

from dataclasses import dataclass

from jinja2 import TemplateError

from .errors import BadRequestError

MAX_PROMPT_CHARS = 200_000
MAX_TOKENS_LIMIT = 4096


def completion_ids(model, prompt: str) -> list[int]:
    _check_text(prompt, "prompt")
    return list(model.tokenizer(prompt)["input_ids"])


def chat_ids(model, messages: list[dict]) -> list[int]:
    if not model.has_chat_template:
        raise BadRequestError(
            f"{model.card.id} has no chat template (it is a base model): use /v1/completions with a "
            "prompt for it to continue, or pick a chat model from GET /v1/models."
        )
    if not messages or not any(str(m.get("content") or "").strip() for m in messages):
        raise BadRequestError("The chat is empty: send at least one message with some content.")
    for m in messages:
        _check_text(m.get("content") or "", "message content", allow_empty=True)
    tok = model.tokenizer
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except (TemplateError, ValueError, TypeError, KeyError) as err:  # the template refused them
        raise BadRequestError(
            f"{model.card.id}'s chat template refused these messages ({err}). Check the roles "
            "(system, user, assistant) and their order."
        ) from None
    return list(tok(text, add_special_tokens=False)["input_ids"])


@dataclass
class AppTurn:
    """One request to an app: ``prepared`` (``workbench.apps.Prepared``: messages, the exact
    prompt, settings after the request's overrides, citations, notes) and ``ids`` (that prompt's
    token ids, tokenized as ``App.prepare`` counted them)."""

    prepared: object
    ids: list[int]


def app_turn(store, app_id: str, model, messages: list[dict], overrides: dict) -> AppTurn:
    """Prepare ``messages`` (role/content; the last one the user's question) for app ``app_id``
    on its loaded base ``model``. The request's system messages follow the app's instructions;
    the turns before the question are the history. 400 when there is no question to answer."""
    from ..apps.app import open_app  # the apps package sits above the store and the runtime

    for m in messages:
        _check_text(m.get("content") or "", "message content", allow_empty=True)
    system = "\n\n".join(m["content"].strip() for m in messages if m["role"] == "system" and m["content"].strip())
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise BadRequestError(
            f"App {app_id} answers the last message, which must be the user's and not empty: end the "
            "messages with {'role': 'user', 'content': 'your question'}."
        )
    app = open_app(store, app_id, model=model)
    if system:
        instructions = "\n\n".join(x for x in (app.card.instructions.strip(), system) if x)
        app.card = app.card.with_changes(instructions=instructions)
    prepared = app.prepare(turns[-1]["content"], turns[:-1], **overrides)
    ids = model.tokenizer(prepared.prompt, add_special_tokens=not prepared.chat)["input_ids"]
    return AppTurn(prepared, list(ids))


def check_budget(model, prompt_tokens: int, max_tokens: int) -> None:
    """Refuse ``max_tokens`` < 1, over the server's limit, or past the context with the prompt."""
    limit = model.context_length
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequestError(f"max_tokens is {max_tokens!r}: ask for at least 1 new token.")
    if max_tokens > MAX_TOKENS_LIMIT:
        raise BadRequestError(
            f"max_tokens is {max_tokens:,}; this server generates at most {MAX_TOKENS_LIMIT:,} "
            "tokens per request. Lower it."
        )
    if prompt_tokens >= limit:
        raise BadRequestError(
            f"The prompt is {prompt_tokens:,} tokens; {model.card.id} reads at most {limit:,}. "
            "Shorten the prompt."
        )
    if prompt_tokens + max_tokens > limit:
        raise BadRequestError(
            f"The prompt is {prompt_tokens:,} tokens and max_tokens is {max_tokens:,}; "
            f"{model.card.id} holds {limit:,} in all. Set max_tokens to at most "
            f"{limit - prompt_tokens:,} or shorten the prompt."
        )


def _check_text(text: str, what: str, allow_empty: bool = False) -> None:
    if not isinstance(text, str):
        raise BadRequestError(f"The {what} must be a string.")
    if not allow_empty and not text.strip():
        raise BadRequestError(f"The {what} is empty: send some text for the model to continue.")
    if len(text) > MAX_PROMPT_CHARS:
        raise BadRequestError(
            f"The {what} has {len(text):,} characters; the server takes at most {MAX_PROMPT_CHARS:,}."
        )
