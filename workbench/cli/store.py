"""``workbench store list|install|remove|verify|path|add``: browse and manage the model store."""
from __future__ import annotations

import json
import sys

from ..common import human_bytes, human_count
from ..store import Store
from .terminal import TerminalProgress


def cmd_store_list(args) -> int:
    store = Store()
    entries = store.list()
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    print(f"{'id':<24} {'status':<14} {'params':>8} {'size':>9}  name")
    for e in entries:
        params = human_count(e.card.parameters)
        print(f"{e.card.id:<24} {e.status:<14} {params:>8} {human_bytes(e.size_bytes):>9}  {e.card.name}")
    for path, problem in store.catalog.problems:
        print(f"skipped {path}: {problem}", file=sys.stderr)
    return 0


def cmd_store_install(args) -> int:
    path = Store().install(args.id, progress=TerminalProgress(), force=args.force)
    print(path)
    return 0


def cmd_store_remove(args) -> int:
    store = Store()
    card = store.card(args.id)
    removed = store.discard(card.id)
    if not removed:
        print(f"{card.id} was not installed")
    elif card.custom:
        print(f"removed {card.id} from the store (its files and its card)")
    else:
        print(f"removed the files of {card.id} (it ships with the workbench and stays listed as available)")
    return 0


def cmd_store_verify(args) -> int:
    report = Store().verify(args.id, progress=TerminalProgress())
    if report.ok:
        print(f"{report.model_id}: ok ({report.checked} files match the manifest)")
        return 0
    print(f"{report.model_id}: DAMAGED", file=sys.stderr)
    for p in report.problems:
        print(f"  {p}", file=sys.stderr)
    print(f"Reinstall with: workbench store install {report.model_id} --force", file=sys.stderr)
    return 1


def cmd_store_path(args) -> int:
    print(Store().path(args.id))
    return 0


def cmd_store_add(args) -> int:
    card = Store().add(
        args.id, local_dir=args.dir, gguf=args.gguf, hub=args.hub, revision=args.revision,
        name=args.name, install=not args.no_install, progress=TerminalProgress(),
    )
    print(f"added {card.id}")
    return 0


def add_cli(sub) -> None:
    store = sub.add_parser("store", help="browse and manage the model store")
    ssub = store.add_subparsers(dest="store_command", required=True)
    p = ssub.add_parser("list", help="models in the catalog with their status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_store_list)
    p = ssub.add_parser("install", help="fetch, verify and convert a model")
    p.add_argument("id")
    p.add_argument("--force", action="store_true", help="reinstall even if installed")
    p.set_defaults(func=cmd_store_install)
    for name, func, text in (
        ("remove", cmd_store_remove, "delete a model's files; a model you added or made also leaves the list"),
        ("verify", cmd_store_verify, "re-hash an installed model against its manifest"),
        ("path", cmd_store_path, "print the folder of an installed model"),
    ):
        p = ssub.add_parser(name, help=text)
        p.add_argument("id")
        p.set_defaults(func=func)
    p = ssub.add_parser("add", help="add your own model: a local folder, a GGUF file or a hub id")
    p.add_argument("id", help="the id to give it in the store")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dir", help="a folder saved with save_pretrained (safetensors)")
    src.add_argument("--gguf", help="a .gguf file")
    src.add_argument("--hub", help="a Hugging Face hub repo id")
    p.add_argument("--revision", default="main")
    p.add_argument("--name")
    p.add_argument("--no-install", action="store_true")
    p.set_defaults(func=cmd_store_add)
