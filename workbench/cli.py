"""The ``workbench`` command line: ``workbench store ...``, ``workbench generate ...`` and the
commands other modules register (each module adds its own sub-parser with ``add_cli``).

Errors from the workbench print their message to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from .errors import WorkbenchError
from .store import Store
from .units import human_bytes, human_count

# Modules that add their own sub-commands: each defines ``add_cli(subparsers)``.
EXTENSIONS: tuple[str, ...] = ("workbench.attention_cli", "workbench.onnx_cli")


class TerminalProgress:
    """A one-line progress bar on stderr for ``progress(fraction, message)`` callbacks."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self.last = stream, width, ""

    def __call__(self, fraction: float, message: str) -> None:
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% {message[:60]:<60}"
        if line != self.last:
            self.stream.write(line)
            self.stream.flush()
            self.last = line
        if fraction >= 1.0:
            self.stream.write("\n")


# --- store --------------------------------------------------------------------------------------

def cmd_store_list(args) -> int:
    entries = Store().list()
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    print(f"{'id':<24} {'status':<14} {'params':>8} {'size':>9}  name")
    for e in entries:
        params = human_count(e.card.parameters)
        print(f"{e.card.id:<24} {e.status:<14} {params:>8} {human_bytes(e.size_bytes):>9}  {e.card.name}")
    return 0


def cmd_store_install(args) -> int:
    path = Store().install(args.id, progress=TerminalProgress(), force=args.force)
    print(path)
    return 0


def cmd_store_remove(args) -> int:
    store = Store()
    removed = store.remove(args.id)
    print(f"removed {store.card(args.id).id}" if removed else f"{args.id} was not installed")
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


# --- generate -----------------------------------------------------------------------------------

def cmd_generate(args) -> int:
    from .loading import load_model

    store = Store()
    card = store.card(args.id)
    if not store.is_installed(card.id):
        store.install(card.id, progress=TerminalProgress())
    model = load_model(card.id, store=store, device=args.device, threads=args.threads)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="GPT Store Workbench")
    sub = parser.add_subparsers(dest="command", required=True)

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
        ("remove", cmd_store_remove, "delete an installed model"),
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

    for name in EXTENSIONS:
        importlib.import_module(name).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
