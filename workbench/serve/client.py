"""A minimal client for ``/api/generate`` on the standard library (the API page's "try it" box).

``generate(base, key, model, text)`` returns the decoded JSON answer, or raises ``WorkbenchError``
with the server's own error message (which says how to fix it). The key is sent, never logged.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from ..errors import WorkbenchError


def generate(base: str, key: str, model: str, text: str, max_new_tokens: int = 64, timeout: float = 120.0) -> dict:
    data = urllib.parse.urlencode({"text": text, "max_new_tokens": str(max_new_tokens)}).encode()
    url = f"{base}/api/generate?model={urllib.parse.quote(model)}"
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {key}"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise WorkbenchError(f"The server answered {err.code}: {message}") from None
    except (urllib.error.URLError, OSError) as err:
        raise WorkbenchError(f"Could not reach {base} ({err}); start the server first.") from None
