"""How much an app's knowledge helps the store's default model answer from a document it cannot
know, and which retrieval settings make it answer right: accuracy with no knowledge, with the
whole text in the system prompt, and with retrieval (BM25 over an FTS5 index) varied one thing at
a time: passage size (whole sections, or sentences packed up to N characters, heading kept),
how many passages (k = 1/2/3), where they go (system turn, or the user turn plain or with "Answer
in a few words."), and the query (stop words dropped or kept). Also: the retrieval hit rate (a
cited passage holds an accepted answer) and time to first token (from the call, retrieval and
prompt assembly included; p50 over the questions). The last condition, "app default", goes
through ``Store.app(...).stream`` with the shipped defaults, so the table shows what users get.

The document is the built-in ``harbour-handbook`` app's handbook (invented facts about a made-up
rowing club). Two question sets, reported apart: ``TUNING`` (the 17 first written, used to pick
the defaults) and ``HELD_OUT`` (12 written before any tuning and not used to pick anything).
None is one of the app's own tests. Answers are accepted by substring, and no accepted answer
can be met by echoing the question. Greedy, the model's chat template. Apps are built in a
temporary store; the model comes from $WORKBENCH_HOME (default ~/.cache/gpt-store-workbench).
Prints a table, then one JSON line.

    .venv/bin/python benchmarks/apps_qa.py [--model smollm2-135m-instruct] [--threads N] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from workbench.apps.card import parse_app_card
from workbench.apps.catalog import builtin_apps_dir, save_app
from workbench.apps.evaluation import passes
from workbench.apps.index import build_index, search
from workbench.apps.knowledge import knowledge_text, split_passages
from workbench.apps.prompt import Citation, build_messages
from workbench.latency.environment import cpu_flags, environment
from workbench.runtime.generation import Generation
from workbench.runtime.loading import load_model
from workbench.store import Store

DOCUMENT = builtin_apps_dir() / "harbour-handbook" / "knowledge" / "handbook.md"
INSTRUCTIONS = "You are the helper of the Larkspur Bay Rowing Club. Answer the member's question from the handbook."
TUNING = [
    ("In which year was the rowing club founded?", ["1931"]),
    ("What was the first boathouse?", ["herring shed"]),
    ("What time does the boathouse open in summer?", ["5:45"]),
    ("What time does the boathouse open in winter?", ["7:15"]),
    ("On which day of the week is the boathouse closed?", ["Tuesday"]),
    ("How much does a full adult membership cost?", ["240"]),
    ("How much does a family membership cost?", ["410"]),
    ("How many boats does the club own?", ["eleven", "11 boats"]),
    ("What is the name of the oldest boat?", ["Gannet"]),
    ("What is the newest eight called?", ["Silver Osprey"]),
    ("What must every crew carry?", ["whistle", "torch"]),
    ("When do beginner courses start?", ["first Saturday of May", "Saturday of May"]),
    ("What do the winners of the Lantern Cup receive?", ["brass lantern"]),
    ("Which payment does the café accept?", ["only cash", "cash only", "only accepts cash"]),
    ("How much does it cost to rent a locker?", ["15 crowns"]),
    ("What colour is the club kit?", ["dark green"]),
    ("Who is the club secretary?", ["Mirela Vasquez", "Vasquez"]),
]
HELD_OUT = [  # written before any tuning; never used to choose a default
    ("What was the job of the club's founder?", ["ferry pilot"]),
    ("In which year was the Gannet built?", ["1958"]),
    ("When is nobody allowed to row?", ["flag is red", "red flag"]),
    ("How long do beginner courses last?", ["six weeks", "6 weeks"]),
    ("On which day is the Lantern Cup held?", ["Sunday of August"]),
    ("Who runs the café?", ["volunteers"]),
    ("Where is club kit sold?", ["front desk"]),
    ("When is the club office open?", ["Thursday"]),
    ("How many people does a family membership cover?", ["four", "4 people"]),
    ("What kind of boat is the Gannet?", ["coxed four"]),
    ("Who must juniors under fourteen row with?", ["coach"]),
    ("What is the café's best-known dish?", ["mackerel"]),
]
QUESTIONS = [(q, a, "tuning") for q, a in TUNING] + [(q, a, "held-out") for q, a in HELD_OUT]
SENTENCES = 1  # pack nothing: one sentence (or list item) a passage
CONDITIONS = [  # name, dict(k, size: passage target chars (0 = sections), placement, frame, stop_words)
    ("none", None),
    ("whole text", "whole"),
    ("sections k=1 system", dict(k=1, size=0, placement="system")),
    ("sections k=2 system", dict(k=2, size=0, placement="system")),
    ("sections k=1 user", dict(k=1, size=0, placement="user")),
    ("sentences k=1 system", dict(k=1, size=SENTENCES, placement="system")),
    ("sentences k=2 system", dict(k=2, size=SENTENCES, placement="system")),
    ("sentences k=3 system", dict(k=3, size=SENTENCES, placement="system")),
    ("sentences k=1 user", dict(k=1, size=SENTENCES, placement="user")),
    ("sentences k=1 user brief", dict(k=1, size=SENTENCES, placement="user", frame="brief")),
    ("sentences k=2 user brief", dict(k=2, size=SENTENCES, placement="user", frame="brief")),
    ("sentences k=1 system, stop words kept", dict(k=1, size=SENTENCES, placement="system", stop_words=False)),
    ("<=200 chars k=1 system", dict(k=1, size=200, placement="system")),
    ("<=200 chars k=2 system", dict(k=2, size=200, placement="system")),
    ("app default", "app"),
]


def timed(t0: float, pieces) -> tuple[str, float]:
    """The text of ``pieces`` and ms from ``t0`` to the first piece."""
    first, text = None, ""
    for piece in pieces:
        first = first or time.perf_counter()
        text += piece
    return text.strip(), ((first or time.perf_counter()) - t0) * 1000


def variant_answers(model, tmp: Path, name: str, spec: dict, max_new_tokens: int):
    """Retrieval with ``spec``'s settings, the prompt built by the app's own ``build_messages``."""
    card = parse_app_card({"id": "bench", "base_model": model.card.id, "instructions": INSTRUCTIONS,
                           "knowledge": {"placement": spec["placement"]}})
    passages = split_passages(DOCUMENT.name, knowledge_text(DOCUMENT), 1200, target_chars=spec["size"])
    index = build_index(tmp / (card.id + "-" + "".join(c for c in name if c.isalnum()) + ".sqlite"),
                        passages, {DOCUMENT.name: "-"})
    for question, *_ in QUESTIONS:
        t0 = time.perf_counter()
        hits = search(index, question, spec["k"], stop_words=spec.get("stop_words", True))
        cites = [Citation(p.file, p.heading, p.start, p.end, s, p.text) for p, s in hits]
        messages = build_messages(card, question, [], cites, card.examples, user_frame=spec.get("frame"))
        gen = Generation(model, messages, max_new_tokens=max_new_tokens, do_sample=False, chat=True)
        answer, ttft = timed(t0, gen)
        yield answer, cites, ttft


def app_answers(model, store, name: str, mode: str, max_new_tokens: int):
    """Through ``Store.app``: ``mode`` "whole" (no knowledge files, the text in the instructions),
    "app" (the shipped harbour-handbook card's knowledge settings), else no knowledge."""
    instructions = INSTRUCTIONS
    if mode == "whole":
        instructions += "\n\nHandbook:\n" + DOCUMENT.read_text(encoding="utf-8")
    data = {"id": "bench-" + mode, "base_model": model.card.id, "instructions": instructions,
            "generation": {"temperature": 0.0, "max_new_tokens": max_new_tokens}}
    if mode == "app":
        shipped = tomllib.loads((builtin_apps_dir() / "harbour-handbook" / "app.toml").read_text(encoding="utf-8"))
        data["knowledge"] = {k: v for k, v in shipped["knowledge"].items() if k != "files"}
    save_app(store, parse_app_card(data), [DOCUMENT] if mode == "app" else [])
    app = store.app(data["id"], model=model)
    for _ in QUESTIONS:
        stream = app.stream(_[0])
        answer, _ttft = timed(time.perf_counter(), stream)
        yield stream.last.text, stream.last.citations, stream.last.ttft_ms


def run_condition(model, store, tmp, name, spec, max_new_tokens) -> dict:
    if isinstance(spec, dict):
        answers = variant_answers(model, tmp, name, spec, max_new_tokens)
    else:
        answers = app_answers(model, store, name, spec or "none", max_new_tokens)
    rows, ttft = [], []
    for (question, accepted, part), (text, cites, ms) in zip(QUESTIONS, answers):
        ttft.append(ms)
        rows.append({"question": question, "set": part, "answer": text, "right": passes(text, accepted),
                     "hit": any(passes(c.text, accepted) for c in cites),
                     "cited": [f"{c.heading}: {c.text[:60]}" for c in cites]})
    retrieval = isinstance(spec, dict) or spec == "app"
    result = {"condition": name, "spec": spec, "retrieval": retrieval}
    for part in ("tuning", "held-out"):
        mine = [r for r in rows if r["set"] == part]
        result[part] = {"right": sum(r["right"] for r in mine), "total": len(mine),
                        "hits": sum(r["hit"] for r in mine) if retrieval else None}
    result["ttft_ms_p50"] = statistics.median(ttft)
    return result, rows


def pct(n, total) -> str:
    return f"{n:>2}/{total:<2} {n / total:>4.0%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", nargs="*", help="run only the conditions whose name starts with one of these")
    args = ap.parse_args()
    model = load_model(args.model, store=Store(), threads=args.threads)
    load_before = os.getloadavg()
    conditions = [c for c in CONDITIONS if not args.only or any(c[0].startswith(o) for o in args.only)]
    results, answers = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        for name, spec in conditions:
            result, rows = run_condition(model, store, Path(tmp), name, spec, args.max_new_tokens)
            results.append(result)
            answers[name] = rows
    print(f"{args.model}, greedy, over {DOCUMENT.name} (invented facts): {len(TUNING)} tuning questions, "
          f"{len(HELD_OUT)} held-out\n")
    print(f"{'condition':<40} {'right (tuning)':>15} {'right (held-out)':>17} {'hits (tuning)':>14} "
          f"{'hits (held-out)':>16} {'TTFT p50 ms':>12}")
    for r in results:
        t, h = r["tuning"], r["held-out"]
        hits = [pct(x["hits"], x["total"]) if x["hits"] is not None else "-" for x in (t, h)]
        print(f"{r['condition']:<40} {pct(t['right'], t['total']):>15} {pct(h['right'], h['total']):>17} "
              f"{hits[0]:>14} {hits[1]:>16} {r['ttft_ms_p50']:>12.0f}")
    for name, rows in answers.items():
        misses = [a for a in rows if not a["right"]]
        if misses and name != "none":
            print(f"\nmisses, {name}: " + "; ".join(f"[{a['set']}] {a['question']} -> {a['answer']!r}" for a in misses))
    print(json.dumps({"benchmark": "apps_qa", "model": args.model, "tuning_questions": len(TUNING),
                      "held_out_questions": len(HELD_OUT), "max_new_tokens": args.max_new_tokens,
                      "load_average_before": load_before, "load_average_after": os.getloadavg(),
                      "cpu_flags": cpu_flags(), "environment": environment(),
                      "results": results, "answers": answers}))


if __name__ == "__main__":
    main()
