"""What counts as a secret in a line of text, written once: API keys (``wb-...``), bearer tokens
and key-like query values (``?api_key=...``). ``redact`` takes them out of log lines (the
server's formatter); ``holds_secret`` tells the API guard that a refused request carried its key
in the URL."""
from __future__ import annotations

import re

REDACTED = "[redacted]"
_SECRETS = (
    (re.compile(r"wb-[A-Za-z0-9_\-]{6,}"), "wb-" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)([?&;](?:api[_-]?key|key|x-api-key|(?:access_|id_|refresh_)?token|auth|authorization|"
                r"secret|password|passwd)=)[^&\s\"'#]*"),
     r"\1" + REDACTED),
)


def redact(text: str) -> str:
    """``text`` with API keys, bearer tokens and key-like query values replaced by ``[redacted]``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def holds_secret(text: str) -> bool:
    """Whether ``text`` (a URL, a query string) holds something ``redact`` would take out."""
    return redact(text) != text
