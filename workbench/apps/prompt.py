"""Prompt assembly for an app turn: instructions, few-shot examples, the retrieved passages and
the question, in the base model's chat template, within its context budget.

Placement ``system``: the passages follow the instructions in the system turn (after
``KNOWLEDGE_LEAD``); ``user``: they precede the question in the user turn (``Knowledge: ...
Question: ...``, see ``USER_FRAMES``). Each passage is shown under its section's heading. The budget is the model's context length minus
``max_new_tokens``, counted with the model's own tokenizer on the exact text sent. When the prompt
does not fit, what goes first is, in order: earlier turns of the conversation (oldest first), the
few-shot examples, passages (lowest ranked first), then the question is cut (its start kept);
each step leaves a note. A model without a chat template gets a plain ``User:``/``Assistant:``
transcript. This module never generates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidInputError
from .card import AppCard

KNOWLEDGE_LEAD = "Answer from the passages below, in a few words."
MIN_QUESTION_TOKENS = 8
USER_FRAMES = {  # how the user turn puts passages and question; "plain" is what placement "user" sends
    "plain": "Knowledge:\n{block}\n\nQuestion: {question}",
    "brief": "Knowledge:\n{block}\n\nQuestion: {question}\nAnswer in a few words.",
}
USER_FRAME = "plain"


@dataclass
class Citation:
    """A passage that went into the prompt: ``text == knowledge_text(file)[start:end]``."""

    file: str
    heading: str
    start: int
    end: int
    score: float
    text: str

    def to_json(self) -> dict:
        return {"file": self.file, "heading": self.heading, "start": self.start, "end": self.end,
                "score": self.score, "text": self.text}


@dataclass
class Prepared:
    """What one turn sends: ``messages`` (role/content), ``prompt`` (the exact text, template
    applied), ``prompt_tokens``, ``settings`` (generation settings after overrides),
    ``citations`` (the passages included, best first) and ``notes`` (what was dropped or cut)."""

    messages: list[dict]
    prompt: str
    prompt_tokens: int
    settings: dict
    citations: list[Citation]
    chat: bool
    notes: list[str] = field(default_factory=list)


def passage_block(citations: list[Citation]) -> str:
    """The passages as they go into the prompt: each under its heading when its text does not
    start with it, separated by blank lines."""
    parts = []
    for c in citations:
        head = c.heading.rsplit(" > ", 1)[-1]
        parts.append(c.text if not head or c.text.lstrip("# ").startswith(head) else f"## {head}\n{c.text}")
    return "\n\n".join(parts)


def build_messages(card: AppCard, question: str, history, citations: list[Citation], examples,
                   user_frame: str | None = None) -> list[dict]:
    """The turns sent, before the chat template: system (instructions, passages when placed
    there), the examples, ``history``, then the user turn (``user_frame``: a ``USER_FRAMES`` key,
    default ``USER_FRAME``, when the passages go there)."""
    system = card.instructions.strip()
    user = question
    if citations:
        block = passage_block(citations)
        if card.knowledge.placement == "system":
            system = "\n\n".join(x for x in (system, KNOWLEDGE_LEAD, block) if x)
        else:
            user = USER_FRAMES[user_frame or USER_FRAME].format(block=block, question=question)
    messages = [{"role": "system", "content": system}] if system else []
    for ex in examples:
        messages += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
    messages += [{"role": m["role"], "content": m["content"]} for m in history]
    return messages + [{"role": "user", "content": user}]


def render(tokenizer, messages: list[dict], chat: bool) -> str:
    if chat:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = []
    for m in messages:
        lines.append(m["content"] if m["role"] == "system" else f"{m['role'].capitalize()}: {m['content']}")
    return "\n\n".join(lines) + "\n\nAssistant:"


def count(tokenizer, text: str, chat: bool) -> int:
    return len(tokenizer(text, add_special_tokens=not chat)["input_ids"])


def assemble(card: AppCard, tokenizer, context_length: int, question: str, history=(),
             citations: list[Citation] = (), settings: dict | None = None, chat: bool = True) -> Prepared:
    """Fit one turn into ``context_length - settings['max_new_tokens']`` tokens (see the module
    docstring). ``InvalidInputError`` when even the instructions alone do not fit."""
    settings = dict(settings or {})
    if not question or not question.strip():
        raise InvalidInputError("The question is empty: type a message.")
    for m in history:
        if m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), str):
            raise InvalidInputError("History turns must be {'role': 'user'|'assistant', 'content': text}.")
    budget = context_length - int(settings.get("max_new_tokens", card.generation.max_new_tokens))
    history, examples, citations = list(history), list(card.examples), list(citations)
    notes: list[str] = []

    def fits(q: str):
        messages = build_messages(card, q, history, citations, examples)
        text = render(tokenizer, messages, chat)
        n = count(tokenizer, text, chat)
        return messages, text, n, n <= budget

    messages, text, n, ok = fits(question)
    dropped = {"history": 0, "examples": 0, "passages": 0}
    while not ok and history:
        history = history[2:] if len(history) > 1 else []
        dropped["history"] += 1
        messages, text, n, ok = fits(question)
    while not ok and examples:
        examples.pop()
        dropped["examples"] += 1
        messages, text, n, ok = fits(question)
    while not ok and citations:
        citations.pop()
        dropped["passages"] += 1
        messages, text, n, ok = fits(question)
    if dropped["history"]:
        notes.append("Earlier turns of the conversation were left out to fit the model's context.")
    if dropped["examples"]:
        notes.append(f"{dropped['examples']} example turn(s) were left out to fit the model's context.")
    if dropped["passages"]:
        notes.append(f"{dropped['passages']} passage(s) were left out to fit the model's context.")
    if not ok:
        ids = tokenizer(question, add_special_tokens=False)["input_ids"]
        over = n - budget
        keep = len(ids) - over - 2
        if keep < MIN_QUESTION_TOKENS:
            raise InvalidInputError(
                f"The app's instructions alone take {n - len(ids):,} of the {budget:,} tokens its model has for a "
                "prompt; shorten the instructions or lower max_new_tokens."
            )
        while keep >= MIN_QUESTION_TOKENS:
            messages, text, n, ok = fits(tokenizer.decode(ids[:keep], skip_special_tokens=True))
            if ok:
                break
            keep -= max(n - budget, 1)
        if not ok:
            raise InvalidInputError("The question does not fit the model's context; shorten it.")
        notes.append(f"The question was cut to its first {keep:,} of {len(ids):,} tokens to fit the model's context.")
    return Prepared(messages, text, n, settings, citations, chat, notes)
