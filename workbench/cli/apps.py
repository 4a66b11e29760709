"""``workbench apps list|show|create|chat|test|export|import|remove``: assistants built on store
models (see ``workbench.apps``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..store import Store


def cmd_list(args) -> int:
    from ..apps.catalog import list_apps
    from ..apps.evaluation import test_status

    store = Store()
    problems: list = []
    entries = list_apps(store, problems)
    if args.json:
        rows = [{**e.to_json(), "tests": test_status(store, e.card.id).describe()} for e in entries]
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'id':<24} {'base model':<24} name")
        for e in entries:
            print(f"{e.card.id:<24} {e.card.base_model:<24} {e.card.name}" + (f"  [{e.problem}]" if e.problem else ""))
    for path, message in problems:
        print(f"skipped {path}: {message}", file=sys.stderr)
    return 0


def cmd_show(args) -> int:
    from ..apps.catalog import get_card
    from ..apps.evaluation import test_status

    store = Store()
    card = get_card(store, args.id)
    print(card.to_toml(), end="")
    print(f"# tests: {test_status(store, card.id).describe()}")
    return 0


def cmd_create(args) -> int:
    from ..apps.card import parse_app_card
    from ..apps.catalog import save_app

    instructions = args.instructions or ""
    if args.instructions_file:
        instructions = Path(args.instructions_file).read_text(encoding="utf-8")
    generation = {k: v for k, v in (("temperature", args.temperature), ("max_new_tokens", args.max_new_tokens))
                  if v is not None}
    card = parse_app_card({"id": args.id, "name": args.name or args.id, "base_model": args.model,
                           "description": args.description or "", "instructions": instructions,
                           "starters": args.starter or [], "generation": generation,
                           "knowledge": {"passages": args.passages}}, "the new app")
    path = save_app(Store(), card, args.knowledge or [], require_base=True)
    print(f"created app {card.id} in {path}")
    return 0


def cmd_chat(args) -> int:
    store = Store()
    app = store.app(args.id)
    if args.json:
        print(json.dumps(app.chat(args.text).to_json(), indent=2))
        return 0
    stream = app.stream(args.text)
    for piece in stream:
        print(piece, end="", flush=True)
    print()
    for i, c in enumerate(stream.last.citations, 1):
        print(f"[{i}] {c.file} › {c.heading or '(top)'} (chars {c.start}-{c.end}, score {c.score:.2f})", file=sys.stderr)
    for note in stream.last.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_test(args) -> int:
    from ..apps.evaluation import run_tests

    result = run_tests(Store(), args.id)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for r in result["results"]:
        print(f"{'PASS' if r['passed'] else 'FAIL'}  {r['question']}  ->  {r['answer']!r}")
    print(f"{result['passed']}/{result['total']} of its own tests passed on {result['base_model']}")
    return 0


def cmd_export(args) -> int:
    from ..apps.share import export_app

    path, notes = export_app(Store(), args.id, args.out, format=args.format)
    print(f"wrote {path}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    from ..apps.share import import_app

    print(f"imported {import_app(Store(), args.file, as_id=args.as_id).name}")
    return 0


def cmd_remove(args) -> int:
    from ..apps.catalog import builtin_ids, remove_app

    removed = remove_app(Store(), args.id)
    print(f"removed {args.id}" if removed else f"{args.id} was not in the store")
    if args.id in builtin_ids():
        print(f"note: {args.id} is built in: it comes back, as shipped, the next time it is used.", file=sys.stderr)
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("apps", help="assistants built on store models, with cited knowledge")
    a = p.add_subparsers(dest="apps_command", required=True)
    q = a.add_parser("list", help="built-in and your apps")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = a.add_parser("show", help="an app's card")
    q.add_argument("id")
    q.set_defaults(func=cmd_show)
    q = a.add_parser("create", help="make an app on a store model")
    q.add_argument("id")
    q.add_argument("--model", required=True, help="the base model's store id")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--instructions")
    g.add_argument("--instructions-file")
    q.add_argument("--knowledge", nargs="+", metavar="FILE", help=".txt, .md, .html or .jsonl files")
    q.add_argument("--starter", action="append", metavar="TEXT")
    q.add_argument("--temperature", type=float)
    q.add_argument("--max-new-tokens", type=int)
    q.add_argument("--passages", type=int, default=1, help="passages retrieved per question (default 1)")
    q.add_argument("--name")
    q.add_argument("--description")
    q.set_defaults(func=cmd_create)
    q = a.add_parser("chat", help="ask an app one question")
    q.add_argument("id")
    q.add_argument("text")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_chat)
    q = a.add_parser("test", help="run an app's own tests (greedy) and record the score")
    q.add_argument("id")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_test)
    q = a.add_parser("export", help="write an app to one file")
    q.add_argument("id")
    q.add_argument("--out", required=True)
    q.add_argument("--format", choices=("gptapp", "modelfile"), default="gptapp")
    q.set_defaults(func=cmd_export)
    q = a.add_parser("import", help="install an app from a .gptapp file (checked first)")
    q.add_argument("file")
    q.add_argument("--as", dest="as_id", metavar="NEW_ID")
    q.set_defaults(func=cmd_import)
    q = a.add_parser("remove", help="take an app out of the store")
    q.add_argument("id")
    q.set_defaults(func=cmd_remove)
