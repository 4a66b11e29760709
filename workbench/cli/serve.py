"""``workbench serve`` and ``workbench keys``: ``add_cli(subparsers)`` registers both.

``workbench serve [--model ID ...] [--backend torch|onnxruntime|...] [--host 127.0.0.1] [--port 8000]
[--cors-origin URL ...] [--max-batch 8] [--max-waiting 32] [--store-only]`` serves until Ctrl-C;
``--store-only`` serves the store (``/v1/store/*``) without loading any model.
``workbench keys create NAME [--scope generate,pull,publish]`` prints the new key once, on its last
line (default scope: generate); ``keys list [--json]`` shows names, prefixes and scopes only; ``keys revoke NAME`` deletes one (running servers see it at once).
"""
from __future__ import annotations

import json
import sys
import time

from ..errors import InvalidInputError


def cmd_serve(args) -> int:
    from ..store import Store
    from ..serve.server import serve_forever

    if not 1 <= args.port <= 65535:
        raise InvalidInputError(f"Port {args.port} is out of range: use 1-65535.")
    if args.threads and not args.store_only:
        import torch

        torch.set_num_threads(args.threads)
    serve_forever(
        Store(), args.model or None, backend=args.backend, host=args.host, port=args.port,
        cors_origins=tuple(args.cors_origin or ()), device=args.device, max_batch=args.max_batch,
        max_waiting=args.max_waiting, say=lambda text: print(text, file=sys.stderr, flush=True),
        store_only=args.store_only,
    )
    return 0


def _keys():
    from ..store import Store
    from ..serve.keys import KeyStore

    return KeyStore(Store().home)


def cmd_keys_create(args) -> int:
    from ..serve.keys import parse_scopes

    scopes = parse_scopes(args.scope)
    key = _keys().create(args.name, scopes)
    print(f"Created key '{args.name}' ({', '.join(scopes)}). Copy it now: it is stored hashed and "
          "cannot be shown again.")
    print(key)
    return 0


def cmd_keys_list(args) -> int:
    keys = _keys().list()
    if args.json:
        print(json.dumps([k.to_json() for k in keys], indent=2))
        return 0
    if not keys:
        print("No keys. Create one with `workbench keys create NAME`.")
    for k in keys:
        print(f"{k.name:<24} {k.prefix}…  {','.join(k.scopes):<22} "
              f"created {time.strftime('%Y-%m-%d %H:%M', time.localtime(k.created))}")
    return 0


def cmd_keys_revoke(args) -> int:
    if _keys().revoke(args.name):
        print(f"revoked {args.name}")
        return 0
    print(f"no key called {args.name}", file=sys.stderr)
    return 1


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve store models over HTTP (OpenAI-compatible, API keys)")
    p.add_argument("--model", action="append", help="a model to serve (repeat; default: every installed one)")
    p.add_argument("--backend", default="torch",
                   help="torch, or an ONNX Runtime variant (onnxruntime, onnxruntime-fused, onnxruntime-int8, "
                   "onnxruntime-q4, onnxruntime-q4a8: exported on first use), which batch concurrent "
                   "requests too (measured tokens/s per backend: docs/serving.md); "
                   "llamacpp runs requests in turn")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--cors-origin", action="append", help="allow browser calls from this origin (repeat)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--max-batch", type=int, default=8, help="sequences decoded together per model")
    p.add_argument("--max-waiting", type=int, default=32, help="queued requests per model before 429")
    p.add_argument("--store-only", action="store_true",
                   help="serve the store (/v1/store/*: pull and publish) without loading any model")
    p.set_defaults(func=cmd_serve)

    keys = subparsers.add_parser("keys", help="API keys of the server")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = ksub.add_parser("create", help="make a key; it is printed once, on the last line")
    p.add_argument("name")
    p.add_argument("--scope", default="generate",
                   help="what the key may do, comma-separated: generate (the model routes), pull (read "
                   "the store), publish (send entries to it); default generate")
    p.set_defaults(func=cmd_keys_create)
    p = ksub.add_parser("list", help="key names, prefixes and scopes (never the keys)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_list)
    p = ksub.add_parser("revoke", help="delete a key")
    p.add_argument("name")
    p.set_defaults(func=cmd_keys_revoke)
