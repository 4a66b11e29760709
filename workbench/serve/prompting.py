"""Token ids of a request's prompt, and the bounds on prompt and ``max_tokens``.

Completions tokenize the text as ``workbench generate`` does (the tokenizer's special tokens
added); chats go through the model's own chat template with the assistant turn opened. Both check
that prompt + ``max_tokens`` fit the model's context, with the numbers in the message.
"""
from __future__ import annotations

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
