"""``workbench attention ID TEXT --out FILE.npz [--html FILE.html]``.

The ``.npz`` holds ``weights`` (float32 ``[layers, heads, query, key]``), ``tokens`` (strings as a
person reads them), ``token_ids``, ``layers`` and ``layer_kinds``; ``--html`` writes bertviz's head
view as a standalone page that needs no network.
"""
from __future__ import annotations

import sys

from ..errors import InvalidInputError
from ..store import Store
from .terminal import ensure_installed


def cmd_attention(args) -> int:
    from ..attention import attention, save_npz
    from ..runtime.loading import load_model

    if not args.text.strip():  # before installing or loading anything
        raise InvalidInputError("The text is empty: pass the text to read, e.g. "
                                "workbench attention ID \"The capital of France is\" --out a.npz")
    store = Store()
    model_id = ensure_installed(store, args.id)
    model = load_model(model_id, store=store, device=args.device, threads=args.threads, attn_implementation="eager")
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    result = attention(model, args.text, layers=layers)
    out = save_npz(result, args.out)
    L, H, T, _ = result.weights.shape
    print(f"{out}: weights float32 [{L} layers, {H} heads, {T} query, {T} key], forward {result.forward_ms:.0f} ms")
    if args.html:
        from ..views.bertviz import head_view

        view = head_view(result)
        path = view.save(args.html)
        print(f"{path}: offline head view" + (f" ({view.note})" if view.note else ""))
        if view.note:
            print(view.note, file=sys.stderr)
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("attention", help="save a model's attention over a text (.npz, offline HTML)")
    p.add_argument("id", help="store model id")
    p.add_argument("text", help="the text to read")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--html", help="also write bertviz's head view as a standalone offline page")
    p.add_argument("--layers", help="only these layers, e.g. 0,5,11 (all by default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_attention)
