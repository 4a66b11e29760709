"""``workbench finetune BASE --dataset D --out NEW_ID [...]`` (starts a job and waits, showing
progress) and ``workbench jobs [list|attach|stop|resume|finish|delete]``."""
from __future__ import annotations

import json
import sys
from dataclasses import fields

from ..store import Store
from .terminal import TerminalProgress, ensure_installed

_SETTINGS = ("rank", "alpha", "dropout", "learning_rate", "max_steps", "epochs", "seq_length", "batch_size",
             "warmup_steps", "seed", "eval_every", "eval_tokens", "ppl_window", "ppl_tokens", "threads")


def _follow(store: Store, job_id: str) -> int:
    from ..finetune.jobs import FAILED, FINISHED, wait

    bar = TerminalProgress()
    seen = {"n": 0}

    def update(now, events):
        for e in events[seen["n"]:]:
            if e.get("event") == "baseline":
                print(f"\nbase perplexity {e['perplexity']:.2f} over {e['tokens']} held-out tokens", file=sys.stderr)
            elif e.get("event") == "eval":
                print(f"\nstep {e['step']}: eval loss {e['eval_loss']:.4f}", file=sys.stderr)
            elif e.get("event") == "finished":
                print(f"\nadded {e['model_id']}: perplexity {e['perplexity_before']:.2f} -> "
                      f"{e['perplexity_after']:.2f}", file=sys.stderr)
        seen["n"] = len(events)
        steps = [e for e in events if e.get("event") == "step"]
        if steps:
            s = steps[-1]
            bar(min(s["step"] / max(s["max_steps"], 1), 0.999),
                f"{now.status} step {s['step']}/{s['max_steps']} loss {s['loss']:.3f} "
                f"{s['tokens_per_s']:.0f} tok/s ETA {s['eta_s']:.0f}s")
        else:
            bar(0.0, f"{now.status}: preparing (base perplexity, data)")

    try:
        final = wait(store, job_id, poll_s=1.0, on_update=update)
    except KeyboardInterrupt:
        print(f"\nleft job {job_id} running; `workbench jobs attach {job_id}` to follow it, "
              f"`workbench jobs stop {job_id}` to stop it", file=sys.stderr)
        return 130
    print(file=sys.stderr)
    if final.note:
        print(final.note, file=sys.stderr)
    if final.status == FAILED or final.error:
        print(f"job {job_id} {final.status}: {final.error}", file=sys.stderr)
        return 2
    print(f"job {job_id}: {final.status}" + (f" -> model {final.model_id}" if final.status == FINISHED else
                                               f" at step {final.saved_step}"))
    return 0


def cmd_finetune(args) -> int:
    from ..finetune.config import FinetuneConfig
    from ..finetune.jobs import check_new_model_id, dataset_sha256, start_job

    store = Store()
    check_new_model_id(store, args.out)  # refused before a base model is downloaded for it
    dataset_sha256(store, args.dataset)
    base = ensure_installed(store, args.base)
    settings = {k: getattr(args, k) for k in _SETTINGS if getattr(args, k) is not None}
    if args.target_modules:
        settings["target_modules"] = tuple(args.target_modules.split(","))
    config = FinetuneConfig(base, args.dataset, args.out, device=args.device, **settings)
    job_id = start_job(store, config)
    print(f"started job {job_id}", file=sys.stderr)
    if args.no_wait:
        print(job_id)
        return 0
    return _follow(store, job_id)


def cmd_jobs(args) -> int:
    from ..finetune import jobs

    store = Store()
    action = args.action or "list"
    if action == "list":
        found = jobs.list_jobs(store)
        if args.json:
            print(json.dumps([j.to_json() for j in found], indent=2))
            return 0
        if not found:
            print("no fine-tuning jobs")
        for j in found:
            print(f"{j.job_id:<40} {j.status:<10} step {j.step}/{j.max_steps} (saved {j.saved_step})  "
                  f"{j.base} -> {j.out}" + (f"  {j.note or j.error}" if (j.note or j.error) else ""))
        for folder in jobs.stray_folders(store):
            print(f"not a job of this version (delete it by hand if you no longer need it): {folder}")
        return 0
    if not args.job:
        active = jobs.active_job(store)
        found = jobs.list_jobs(store)
        args.job = active.job_id if active else (found[0].job_id if found else None)
        if args.job is None:
            print("no fine-tuning jobs", file=sys.stderr)
            return 1
    if action == "attach":
        return _follow(store, args.job)
    if action == "stop":
        print(jobs.stop_job(store, args.job))
        return 0
    if action == "resume":
        print(jobs.resume_job(store, args.job))
        return _follow(store, args.job) if args.wait else 0
    if action == "finish":
        print(jobs.finish_job(store, args.job))
        return _follow(store, args.job) if args.wait else 0
    jobs.delete_job(store, args.job)
    print(f"deleted job {args.job}")
    return 0


def add_cli(sub) -> None:
    from ..finetune.config import FinetuneConfig

    defaults = {f.name: f.default for f in fields(FinetuneConfig)}
    p = sub.add_parser("finetune", help="LoRA fine-tune a store model into a new store model")
    p.add_argument("base", help="store model id")
    p.add_argument("--dataset", required=True, help="store dataset id, or the path of your file")
    p.add_argument("--out", required=True, help="id of the new model")
    for name in _SETTINGS:
        kind = type(defaults[name])
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"default {defaults[name]}")
    p.add_argument("--target-modules", help="comma-separated module names (default all-linear)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-wait", action="store_true", help="start the job and return")
    p.set_defaults(func=cmd_finetune)
    j = sub.add_parser("jobs", help="fine-tuning jobs: list, attach, stop, resume, finish, delete")
    j.add_argument("action", nargs="?", choices=("list", "attach", "stop", "resume", "finish", "delete"))
    j.add_argument("job", nargs="?", help="job id (default: the running one, else the newest)")
    j.add_argument("--json", action="store_true")
    j.add_argument("--wait", action="store_true", help="resume/finish: follow the job until it ends")
    j.set_defaults(func=cmd_jobs)
