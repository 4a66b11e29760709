"""How much an app's knowledge helps the store's default model answer from a document it cannot
know: accuracy with no knowledge, with the whole text in the system prompt, and with retrieval
(BM25 over the app's index) at 1, 2 and 3 passages in the system turn, and 1 in the user turn;
the retrieval hit rate (a cited passage holds an accepted answer) and time to first token
(from the call, retrieval and prompt assembly included; p50 over the questions).

The document is the built-in ``harbour-handbook`` app's handbook (invented facts about a made-up
rowing club); the questions below are not the app's own tests. Greedy, the model's chat template.
Apps are built in a temporary store; the model comes from $WORKBENCH_HOME (default
~/.cache/gpt-store-workbench). Prints a table, then one JSON line.

    .venv/bin/python benchmarks/apps_qa.py [--model smollm2-135m-instruct] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from workbench.apps.card import parse_app_card
from workbench.apps.catalog import builtin_apps_dir, save_app
from workbench.apps.evaluation import passes
from workbench.latency.environment import cpu_flags, environment
from workbench.runtime.loading import load_model
from workbench.store import Store

DOCUMENT = builtin_apps_dir() / "harbour-handbook" / "knowledge" / "handbook.md"
INSTRUCTIONS = "You are the helper of the Larkspur Bay Rowing Club. Answer the member's question from the handbook."
QUESTIONS = [
    ("In which year was the rowing club founded?", ["1931"]),
    ("What was the first boathouse?", ["herring shed"]),
    ("What time does the boathouse open in summer?", ["5:45"]),
    ("What time does the boathouse open in winter?", ["7:15"]),
    ("On which day of the week is the boathouse closed?", ["Tuesday"]),
    ("How much does a full adult membership cost?", ["240"]),
    ("How much does a family membership cost?", ["410"]),
    ("How many boats does the club own?", ["eleven", "11"]),
    ("What is the name of the oldest boat?", ["Gannet"]),
    ("What is the newest eight called?", ["Silver Osprey"]),
    ("What must every crew carry?", ["whistle", "torch"]),
    ("When do beginner courses start?", ["first Saturday of May", "Saturday of May"]),
    ("What do the winners of the Lantern Cup receive?", ["brass lantern", "lantern"]),
    ("Which payment does the café accept?", ["cash"]),
    ("How much does it cost to rent a locker?", ["15 crowns", "15"]),
    ("What colour is the club kit?", ["dark green", "green"]),
    ("Who is the club secretary?", ["Mirela Vasquez", "Vasquez"]),
]
CONDITIONS = [  # (name, passages or None, placement, whole text in the prompt)
    ("none", None, "system", False),
    ("whole text", None, "system", True),
    ("retrieval k=1", 1, "system", False),
    ("retrieval k=2", 2, "system", False),
    ("retrieval k=3", 3, "system", False),
    ("retrieval k=1, user turn", 1, "user", False),
]


def run_condition(store, model, name, k, placement, whole, max_new_tokens) -> dict:
    text = DOCUMENT.read_text(encoding="utf-8")
    instructions = f"{INSTRUCTIONS}\n\nHandbook:\n{text}" if whole else INSTRUCTIONS
    app_id = "bench-" + name.replace(" ", "-").replace("=", "").replace(",", "")
    card = parse_app_card({"id": app_id, "base_model": model.card.id, "instructions": instructions,
                           "generation": {"temperature": 0.0, "max_new_tokens": max_new_tokens},
                           "knowledge": {"passages": k or 1, "placement": placement}})
    save_app(store, card, [DOCUMENT] if k else [])
    app = store.app(app_id, model=model)
    right = hits = 0
    ttft = []
    rows = []
    for question, accepted in QUESTIONS:
        t0 = time.perf_counter()
        stream = app.stream(question)
        first = None
        for _ in stream:
            first = first or time.perf_counter()
        ttft.append(((first or time.perf_counter()) - t0) * 1000)
        answer = stream.last
        ok = passes(answer.text, accepted)
        hit = any(passes(c.text, accepted) for c in answer.citations)
        right += ok
        hits += hit
        rows.append({"question": question, "answer": answer.text, "right": ok, "hit": hit})
    n = len(QUESTIONS)
    return {"condition": name, "passages": k, "placement": placement, "right": right, "total": n,
            "accuracy": right / n, "hit_rate": (hits / n) if k else None,
            "ttft_ms_p50": statistics.median(ttft), "answers": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    model = load_model(args.model, store=Store(), threads=args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        for name, k, placement, whole in CONDITIONS:
            results.append(run_condition(store, model, name, k, placement, whole, args.max_new_tokens))
    print(f"{args.model}, greedy, {len(QUESTIONS)} questions over {DOCUMENT.name} (invented facts)\n")
    print(f"{'condition':<26} {'right':>7} {'accuracy':>9} {'hit rate':>9} {'TTFT p50 ms':>12}")
    for r in results:
        hit = f"{r['hit_rate']:.0%}" if r["hit_rate"] is not None else "-"
        print(f"{r['condition']:<26} {r['right']:>3}/{r['total']:<3} {r['accuracy']:>9.0%} {hit:>9} {r['ttft_ms_p50']:>12.0f}")
    for r in results:
        misses = [a for a in r["answers"] if not a["right"]]
        if misses and r["passages"]:
            print(f"\nmisses, {r['condition']}: " + "; ".join(f"{a['question']} -> {a['answer']!r}" for a in misses))
    env = environment()
    print(json.dumps({"benchmark": "apps_qa", "model": args.model, "questions": len(QUESTIONS),
                      "cpu_flags": cpu_flags(), "environment": env,
                      "results": [{k: v for k, v in r.items() if k != "answers"} for r in results],
                      "answers": {r["condition"]: r["answers"] for r in results}}))


if __name__ == "__main__":
    main()
