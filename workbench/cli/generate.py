"""``workbench generate ID PROMPT``: stream a generation to the terminal (or print its JSON)."""
from __future__ import annotations

import json
import sys

from ..store import Store
from .terminal import ensure_installed


def cmd_generate(args) -> int:
    from ..runtime.loading import load_model

    store = Store()
    model_id = ensure_installed(store, args.id)
    model = load_model(model_id, store=store, device=args.device, threads=args.threads)
    settings = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=not args.greedy and args.sample,
        seed=args.seed,
        chat=args.chat,
        repetition_penalty=args.repetition_penalty,
    )
    for name in ("temperature", "top_k", "top_p"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    generation = model.stream(args.prompt, **settings)
    if args.json:
        result = generation.run()
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return 0
    for piece in generation:
        sys.stdout.write(piece)
        sys.stdout.flush()
    r = generation.result
    print(
        f"\n[{len(r.token_ids)} tokens, ttft {r.ttft_ms:.0f} ms, {r.tokens_per_s:.1f} tok/s, "
        f"{r.finish_reason}]",
        file=sys.stderr,
    )
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("generate", help="generate text with a store model")
    p.add_argument("id")
    p.add_argument("prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="greedy decoding (the default)")
    mode.add_argument("--sample", action="store_true", help="sample with temperature/top-k/top-p")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_generate)
