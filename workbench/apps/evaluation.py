"""An app's own tests: its card's ``[[tests]]`` run greedy, scored, recorded in the store.

``run_tests(store, id)`` answers each question with temperature 0 and passes it when the answer
contains one of the accepted answers (case-insensitive); the result (``score``, ``passed``,
``total``, ``app_digest``, ``base_model``, ``base_digest``, ``date``, ``results``) is written to
``bench/app_tests.json`` (atomically, under a lock) and returned. ``test_status(store, id)`` says
whether that record still describes the app: ``fresh``; ``stale`` (the app's files or its base
model's weights changed since, or it was measured elsewhere and imported); ``none`` (never run).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..common import atomic_write_json
from ..errors import WorkbenchError
from .catalog import app_digest, ensure_installed, get_card

RESULTS = "app_tests.json"


@dataclass(frozen=True)
class TestStatus:
    state: str  # "fresh" | "stale" | "none"
    reason: str
    result: dict | None

    __test__ = False  # not a pytest class

    def describe(self) -> str:
        """For a store front: "4/5 of its own tests, measured here", with why it is stale."""
        if self.result is None:
            return "its own tests were never run here"
        r = self.result
        text = f"{r['passed']}/{r['total']} of its own tests, measured here on {r['date'][:10]}"
        return text if self.state == "fresh" else f"{text} (stale: {self.reason})"


def _path(store):
    return store.bench_dir / RESULTS


def _read(store) -> dict:
    try:
        return json.loads(_path(store).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise WorkbenchError(f"{_path(store)} is unreadable ({err}); delete it and run `workbench apps test` again.") from err


def recorded(store, app_id: str) -> dict | None:
    return _read(store).get(app_id)


def record(store, app_id: str, result: dict) -> None:
    with store.lock("app-tests"):
        data = _read(store)
        data[app_id] = result
        store.bench_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(_path(store), data)


def passes(answer: str, accepted) -> bool:
    text = answer.lower()
    return any(a.lower() in text for a in accepted)


def run_tests(store, app_id: str, model=None) -> dict:
    """Run and record the app's tests (see the module docstring). ``WorkbenchError`` when the
    card has none."""
    ensure_installed(store, app_id)
    card = get_card(store, app_id)
    if not card.tests:
        raise WorkbenchError(f"App '{app_id}' has no [[tests]]; add some to its app.toml (question, answers).")
    app = store.app(app_id, model=model)
    results = []
    for t in card.tests:
        answer = app.chat(t.question, temperature=0.0)
        results.append({"question": t.question, "answer": answer.text, "accepted": list(t.answers),
                        "passed": passes(answer.text, t.answers),
                        "cited": [f"{c.file}: {c.heading}" for c in answer.citations]})
    passed = sum(r["passed"] for r in results)
    result = {"score": passed / len(results), "passed": passed, "total": len(results),
              "app_digest": app_digest(store, app_id), "base_model": card.base_model,
              "base_digest": store.fingerprint(card.base_model),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    record(store, app_id, result)
    return result


def test_status(store, app_id: str) -> TestStatus:
    result = recorded(store, app_id)
    if result is None:
        return TestStatus("none", "never run here: `workbench apps test " + app_id + "`", None)
    fix = f"; run `workbench apps test {app_id}`"
    if result.get("imported"):
        return TestStatus("stale", "measured on another machine before it was imported" + fix, result)
    try:
        if app_digest(store, app_id) != result["app_digest"]:
            return TestStatus("stale", "the app (card or knowledge) changed since" + fix, result)
    except WorkbenchError:
        return TestStatus("stale", "the app is not installed here", result)
    card = get_card(store, app_id)
    if card.base_model != result["base_model"]:
        return TestStatus("stale", f"its base model is now {card.base_model}" + fix, result)
    try:
        if store.fingerprint(card.base_model) != result["base_digest"]:
            return TestStatus("stale", f"{card.base_model}'s weights changed since" + fix, result)
    except WorkbenchError:
        return TestStatus("stale", f"{card.base_model} is not installed", result)
    return TestStatus("fresh", "", result)


test_status.__test__ = False  # a pytest collecting a module that imports it must not take it for a test
