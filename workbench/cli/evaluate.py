"""``workbench eval ID --dataset D [--backend B] [--json FILE]``: held-out perplexity of a store
model (strided sliding windows; KL divergence against torch fp32 for ONNX Runtime backends)."""
from __future__ import annotations

import sys

from ..store import Store
from .terminal import TerminalProgress, ensure_installed, write_json


def cmd_eval(args) -> int:
    from ..data.loading import load_dataset
    from ..quality.evaluation import perplexity
    from ..quality.results import record_quality
    from ..runtime.loading import load_model

    store = Store()
    model_id = ensure_installed(store, args.id)
    dataset = load_dataset(store, args.dataset, progress=TerminalProgress())
    model = load_model(model_id, store=store, device=args.device)
    result = perplexity(model, dataset, args.backend, window=args.window, stride=args.stride,
                        max_tokens=args.max_tokens, reference=not args.no_reference,
                        progress=TerminalProgress(), store=store)
    record_quality(store, result)
    line = (f"{result.model} on {result.dataset} ({result.backend}, {result.device}): perplexity "
            f"{result.perplexity:.3f} over {result.tokens} tokens (window {result.window}, stride "
            f"{result.stride}, {result.seconds:.1f} s)")
    if result.kld_mean is not None:
        line += f"; mean KLD vs torch fp32 {result.kld_mean:.2e}, top-1 agreement {result.top1_agreement:.1%}"
    print(line, file=sys.stderr if args.json == "-" else sys.stdout)
    write_json(args.json, result.to_json())
    return 0


def add_cli(sub) -> None:
    from ..runtime.backends import ALL_BACKENDS

    p = sub.add_parser("eval", help="held-out perplexity of a model on a dataset")
    p.add_argument("id", help="store model id")
    p.add_argument("--dataset", required=True, help="store dataset id, or the path of your file")
    p.add_argument("--backend", default="torch", choices=ALL_BACKENDS)
    p.add_argument("--window", type=int, default=None, help="tokens per window (default min(512, context))")
    p.add_argument("--stride", type=int, default=None, help="tokens the window moves (default window/2)")
    p.add_argument("--max-tokens", type=int, default=4096, help="held-out tokens scored at most")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-reference", action="store_true", help="skip the KL divergence against torch")
    p.add_argument("--json", help="write the result as JSON to FILE ('-' for stdout)")
    p.set_defaults(func=cmd_eval)
