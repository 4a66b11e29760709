"""``workbench lens | arch | attribute | compare``: the Inside views from the command line.

``workbench lens ID TEXT --json FILE [--top-k K] [--target TOKEN]`` writes ``tokens`` and ``top``
(for each layer 1..L, for each lensed position, the top-k ``{id, token, prob}``; layer L is the
model's own next-token distribution) and prints, per layer, the top token after the last position.
Every command prints a table for people; ``--json`` writes the numbers for scripts.
"""
from __future__ import annotations

from ..common import human_bytes
from ..errors import InvalidInputError
from ..store import Store
from .terminal import ensure_installed, write_json


def _model(args):
    from ..runtime.loading import load_model

    if hasattr(args, "text") and not (args.text or "").strip():  # before installing or loading anything
        raise InvalidInputError("The text is empty: pass the text to read, e.g. "
                                "workbench lens ID \"The capital of France is\" --json lens.json")
    store = Store()
    model_id = ensure_installed(store, args.id)
    return load_model(model_id, store=store, device=args.device, threads=args.threads, attn_implementation="eager")


def _write(path: str | None, data: dict) -> None:
    write_json(path, data)


def cmd_lens(args) -> int:
    from ..interpret.lens import logit_lens

    result = logit_lens(_model(args), args.text, top_k=args.top_k, target=args.target,
                        max_positions=args.max_positions)
    first = result.first_top1()[-1]
    print(f"{'layer':>5}  {'top next token':<20} {'p':>7}   target '{result.target_token}' p / rank")
    for layer in range(1, result.num_layers + 1):
        top = result.top(layer, -1)[0]
        mark = "  <- final answer top-1 from here" if layer == first else ""
        print(f"{layer:>5}  {top['token'][:20]:<20} {top['prob']:>7.1%}   "
              f"{result.target_prob[layer - 1, -1]:.1%} / {result.target_rank[layer - 1, -1]}{mark}")
    if result.note:
        print(result.note)
    _write(args.json, result.to_json())
    return 0


def cmd_arch(args) -> int:
    from ..interpret.architecture import architecture

    arch = architecture(_model(args))
    print(f"{arch.model}: {arch.kind}, {arch.layers} layers, hidden {arch.hidden_size}, {arch.heads} q / "
          f"{arch.kv_heads} kv heads, tied head: {arch.tied}")
    print(arch.by_group().to_string(index=False))
    print(f"counted {arch.counted:,} = model.num_parameters() {arch.num_parameters:,}")
    print("weights by variant: " + ", ".join(f"{k} {human_bytes(v)}" for k, v in arch.variant_bytes().items()))
    for variant, size in arch.exports.items():
        print(f"  export {variant} on disk: {human_bytes(size)}")
    _write(args.json, {"model": arch.model, "groups": arch.by_group().to_dict("records"),
                       "tensors": arch.frame().to_dict("records"), "num_parameters": arch.num_parameters,
                       "variant_bytes": arch.variant_bytes(), "exports": arch.exports})
    return 0


def cmd_attribute(args) -> int:
    from ..interpret.attribution import BASELINES, DEFAULT_STEPS, attribute

    r = attribute(_model(args), args.text, target=args.target, steps=args.steps or DEFAULT_STEPS,
                  baseline=args.baseline or BASELINES[0])
    print(f"target '{r.target_token}' p={r.target_prob:.1%} logit {r.target_logit:.3f}")
    print(f"{'#':>4} {'token':<16} {'grad×input':>11} {'integrated':>11} {'occlusion':>10}")
    for i, t in enumerate(r.tokens):
        print(f"{i:>4} {t[:16]:<16} {r.grad_x_input[i]:>+11.4f} {r.integrated[i]:>+11.4f} {r.occlusion_logit[i]:>+10.4f}")
    print(f"integrated gradients: {r.steps} steps ({r.baseline} baseline), completeness error "
          f"{r.completeness_error:.4g} ({r.completeness_relative:.2%})")
    for note in r.notes:
        print(note)
    _write(args.json, r.to_json())
    return 0


def cmd_compare(args) -> int:
    from ..interpret.compare import compare

    base = _model(args)
    args.id = args.tuned
    tuned = _model(args)
    c = compare(base, tuned, args.text)
    print(f"KL({c.base} ‖ {c.tuned}) = {c.kl:.4f} nats")
    for title, rows in (("rose", c.rose), ("fell", c.fell)):
        print(f"{title}: " + ", ".join(f"'{r.token}' {r.base_prob:.1%}→{r.tuned_prob:.1%}" for r in rows[:5]))
    if c.note:
        print(c.note)
    _write(args.json, c.to_json())
    return 0


def add_cli(subparsers) -> None:
    def common(p):
        p.add_argument("--json", help="write the numbers to this JSON file")
        p.add_argument("--device", default="auto")
        p.add_argument("--threads", type=int)

    p = subparsers.add_parser("lens", help="logit lens: what each layer predicts next")
    p.add_argument("id", help="store model id")
    p.add_argument("text")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--target", help="a one-token string (e.g. ' Paris') or id to follow across layers")
    p.add_argument("--max-positions", type=int, default=512, help="lens only the last N positions")
    common(p)
    p.set_defaults(func=cmd_lens)

    p = subparsers.add_parser("arch", help="a model's blocks, shapes and parameters by component")
    p.add_argument("id")
    common(p)
    p.set_defaults(func=cmd_arch)

    p = subparsers.add_parser("attribute", help="which input tokens drove the next token")
    p.add_argument("id")
    p.add_argument("text")
    p.add_argument("--target")
    p.add_argument("--steps", type=int, default=None,
                   help="integrated gradients: at most this many path intervals (default 128; adaptive, stops "
                   "earlier once the completeness error is within 1%%)")
    p.add_argument("--baseline", default=None, choices=("pad", "mean", "zero"), help="default: pad")
    common(p)
    p.set_defaults(func=cmd_attribute)

    p = subparsers.add_parser("compare", help="a model and its fine-tune on one prompt")
    p.add_argument("id", help="the base model")
    p.add_argument("tuned", help="the tuned model (same tokenizer)")
    p.add_argument("text")
    common(p)
    p.set_defaults(func=cmd_compare)
