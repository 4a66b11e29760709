"""``workbench store list|install|remove|verify|path|add|pull|push|remotes``: browse and manage
the model store, and move entries between workbenches (``--from`` / ``--to`` take a URL or the
name of a saved remote; the key comes from ``--key``, else ``$WORKBENCH_API_KEY``, else the key
saved for that remote)."""
from __future__ import annotations

import json
import os
import sys

from ..common import human_bytes, human_count
from ..store import Store, remotes
from ..store.transfer import RemoteStore
from .terminal import TerminalProgress, verify_verdict


def _remote(store: Store, where: str, key: str | None) -> RemoteStore:
    url, saved = remotes.resolve(store, where)
    return RemoteStore(url, api_key=key or os.environ.get("WORKBENCH_API_KEY") or saved, local=store)


def cmd_store_list_remote(args) -> int:
    entries = _remote(Store(), args.from_, args.key).list()
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    print(f"{'kind':<8} {'id':<28} {'size':>9}  name")
    for e in entries:
        print(f"{e.kind:<8} {e.id:<28} {human_bytes(e.size_bytes):>9}  {e.name}")
    return 0


def cmd_store_list(args) -> int:
    if args.from_:
        return cmd_store_list_remote(args)
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
    if args.kind in ("dataset", "app"):
        return _verify_other(args)
    report = Store().verify(args.id, progress=TerminalProgress(), check_origin=not args.offline)
    if report.origin:
        print(f"{report.model_id}: {report.origin}")
    return verify_verdict(report.model_id, report.problems, f"{report.checked} files match the manifest",
                          f"Reinstall with: workbench store install {report.model_id} --force")


def _verify_other(args) -> int:
    """``store verify ID --kind dataset|app``: its files against its manifest, and its origin."""
    from ..store.entries import verify_entry
    from ..store.transfer import origin_report

    store = Store()
    problems = verify_entry(store, args.kind, args.id)
    origin = origin_report(store, args.kind, args.id, ask=not args.offline)
    if origin:
        print(f"{args.id}: {origin}")
    return verify_verdict(args.id, problems, "every file matches the manifest",
                          f"Install it again: `workbench store pull {args.id} --kind {args.kind} --from URL --force`, or "
                          f"`workbench {'datasets install' if args.kind == 'dataset' else 'apps import'} ...`.")
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


def cmd_store_pull(args) -> int:
    store = Store()
    path = _remote(store, args.from_, args.key).pull(args.id, kind=args.kind, progress=TerminalProgress(),
                                                     force=args.force)
    print(path)
    return 0


def cmd_store_push(args) -> int:
    store = Store()
    entry = _remote(store, args.to, args.key).push(args.id, kind=args.kind, as_id=args.as_id,
                                                   progress=TerminalProgress())
    print(f"pushed {entry.kind} {entry.id} ({human_bytes(entry.size_bytes)}, digest {entry.digest[:12]})")
    return 0


def cmd_store_remotes(args) -> int:
    store = Store()
    if args.action == "add":
        if not args.name or not args.url:
            print("usage: workbench store remotes add NAME URL [--key KEY]", file=sys.stderr)
            return 2
        remotes.add_remote(store, args.name, args.url, args.key or os.environ.get("WORKBENCH_API_KEY"))
        print(f"saved remote {args.name} in {remotes.remotes_path(store)} (readable by you only)")
    elif args.action == "remove":
        if not remotes.remove_remote(store, args.name or ""):
            print(f"no remote called {args.name!r}", file=sys.stderr)
            return 1
        print(f"removed remote {args.name}")
    else:
        for r in remotes.list_remotes(store):
            print(remotes.describe(r))
    return 0


def add_cli(sub) -> None:
    store = sub.add_parser("store", help="browse and manage the model store")
    ssub = store.add_subparsers(dest="store_command", required=True)
    p = ssub.add_parser("list", help="models in the catalog with their status (or another store's entries)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--from", dest="from_", metavar="URL", help="list a remote store (a URL or a saved remote's name)")
    p.add_argument("--key", help="API key with the pull scope (else $WORKBENCH_API_KEY)")
    p.set_defaults(func=cmd_store_list)
    p = ssub.add_parser("install", help="fetch, verify and convert a model")
    p.add_argument("id")
    p.add_argument("--force", action="store_true", help="reinstall even if installed")
    p.set_defaults(func=cmd_store_install)
    for name, func, text in (
        ("remove", cmd_store_remove, "delete a model's files; a model you added or made also leaves the list"),
        ("verify", cmd_store_verify, "re-hash an installed model against its manifest (and compare with its origin)"),
        ("path", cmd_store_path, "print the folder of an installed model"),
    ):
        p = ssub.add_parser(name, help=text)
        p.add_argument("id")
        if name == "verify":
            p.add_argument("--offline", action="store_true", help="do not ask a pulled entry's origin")
            p.add_argument("--kind", choices=("model", "dataset", "app"), default="model",
                           help="what ID names (datasets and apps pulled from another store too)")
        p.set_defaults(func=func)
    p = ssub.add_parser("pull", help="install a model, dataset or app from another workbench's store")
    p.add_argument("id")
    p.add_argument("--from", dest="from_", required=True, metavar="URL", help="the store's URL or a saved remote")
    p.add_argument("--key", help="API key with the pull scope (else $WORKBENCH_API_KEY)")
    p.add_argument("--kind", choices=("model", "dataset", "app"))
    p.add_argument("--force", action="store_true", help="replace a local entry of that id that came from elsewhere")
    p.set_defaults(func=cmd_store_pull)
    p = ssub.add_parser("push", help="send a local model, dataset or app to another workbench's store")
    p.add_argument("id")
    p.add_argument("--to", required=True, metavar="URL", help="the store's URL or a saved remote")
    p.add_argument("--key", help="API key with the publish scope (else $WORKBENCH_API_KEY)")
    p.add_argument("--kind", choices=("model", "dataset", "app"))
    p.add_argument("--as", dest="as_id", metavar="NEW_ID", help="the id to give it there")
    p.set_defaults(func=cmd_store_push)
    p = ssub.add_parser("remotes", help="saved remote stores: add NAME URL --key K | list | remove NAME")
    p.add_argument("action", nargs="?", choices=("add", "list", "remove"), default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("url", nargs="?")
    p.add_argument("--key")
    p.set_defaults(func=cmd_store_remotes)
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
