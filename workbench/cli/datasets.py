"""``workbench datasets list|install|remove|verify|add``: text datasets in the store."""
from __future__ import annotations

import json

from ..common import human_bytes
from ..store import Store
from .terminal import TerminalProgress, verify_verdict


def cmd_list(args) -> int:
    from ..data.install import list_datasets

    entries = list_datasets(Store())
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    print(f"{'id':<20} {'status':<10} {'format':<10} {'size':>9}  name")
    for e in entries:
        status = "installed" if e.installed else "available"
        print(f"{e.card.id:<20} {status:<10} {e.card.format:<10} {human_bytes(e.card.size_bytes):>9}  {e.card.name}")
    return 0


def cmd_install(args) -> int:
    from ..data.install import install_dataset

    print(install_dataset(Store(), args.id, progress=TerminalProgress(), force=args.force))
    return 0


def cmd_remove(args) -> int:
    from ..data.install import remove_dataset

    removed = remove_dataset(Store(), args.id, forget=args.forget)
    print(f"removed {args.id}" if removed else f"{args.id} was not installed")
    return 0


def cmd_verify(args) -> int:
    from ..data.install import verify_dataset

    return verify_verdict(args.id, verify_dataset(Store(), args.id), "every file matches the manifest",
                          f"Reinstall with: workbench datasets install {args.id} --force")


def cmd_add(args) -> int:
    from ..data.install import add_dataset

    card = add_dataset(Store(), args.id, args.file, name=args.name, fmt=args.format)
    print(f"added {card.id} ({card.format})")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("datasets", help="text datasets in the store (for eval and fine-tuning)")
    dsub = p.add_subparsers(dest="datasets_command", required=True)
    q = dsub.add_parser("list", help="datasets in the catalog with their status")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = dsub.add_parser("install", help="fetch, verify and split a dataset")
    q.add_argument("id")
    q.add_argument("--force", action="store_true")
    q.set_defaults(func=cmd_install)
    q = dsub.add_parser("remove", help="delete an installed dataset")
    q.add_argument("id")
    q.add_argument("--forget", action="store_true", help="also drop the card of your own dataset")
    q.set_defaults(func=cmd_remove)
    q = dsub.add_parser("verify", help="re-hash an installed dataset against its manifest")
    q.add_argument("id")
    q.set_defaults(func=cmd_verify)
    q = dsub.add_parser("add", help="add your own file (.txt, or .jsonl: text / Alpaca / chat messages)")
    q.add_argument("id")
    q.add_argument("file")
    q.add_argument("--name")
    q.add_argument("--format", choices=("text", "jsonl-text", "alpaca", "chat"))
    q.set_defaults(func=cmd_add)
