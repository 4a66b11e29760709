"""Finish a job: merge its last saved LoRA adapter into the base weights (``merge_and_unload``),
measure before and after, save safetensors + tokenizer, and add the result to the store as a new
model with its own card.

Before/after: the held-out perplexity of the base and of the merged model (same windows, same
tokens; stored in ``bench/quality.json``), and both models' greedy continuations of a few fixed
prompts, side by side (``comparison.json`` in the job folder).

The merged folder ``<job>/merged`` is written through the store's one install primitive
(``workbench.store.install.installing``: staging, fsync, one rename, a full disk as
``DiskSpaceError``); the store then copies it in through ``Store.add``, which installs the same
way. The new card records the
base model, the dataset id and sha256, the hyperparameters, the loss curve, perplexity before and
after, and the date (``[finetune]`` in the card, ``ModelCard.extra["finetune"]``). Removing the
model (``Store.discard``, `workbench store remove`) removes only it: the base model and the job folder stay.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from ..common import atomic_write_json
from ..errors import JobError
from ..quality.evaluation import PerplexityResult, perplexity
from ..quality.results import record_quality
from ..runtime.generation import generate
from ..runtime.loading import Model
from ..store import Store
from ..store.install import installing
from .config import FinetuneConfig
from .jobs import append_log, complete_checkpoints, dataset_changed, pinned_dataset_sha256, read_log


def _toml_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else '"nan"'
    return json.dumps(value)  # str, int, bool: JSON spells them as TOML does


def finetune_toml(facts: dict, hyper: dict, loss: dict) -> str:
    """The ``[finetune]`` tables of the new model's card."""
    lines = ["[finetune]"] + [f"{k} = {_toml_value(v)}" for k, v in facts.items()]
    lines += ["", "[finetune.hyperparameters]"] + [f"{k} = {_toml_value(v)}" for k, v in hyper.items()]
    lines += ["", "[finetune.loss]"] + [f"{k} = {_toml_value(v)}" for k, v in loss.items()]
    return "\n".join(lines) + "\n"


def loss_curve(events: list[dict]) -> dict:
    """Train and eval loss by step from a job's log (the last value of a step wins after a resume)."""
    train = {e["step"]: e["loss"] for e in events if e.get("event") == "step"}
    held = {e["step"]: e["eval_loss"] for e in events if e.get("event") == "eval"}
    return {"steps": sorted(train), "train": [round(train[s], 5) for s in sorted(train)],
            "eval_steps": sorted(held), "eval": [round(held[s], 5) for s in sorted(held)]}


def side_by_side(base: Model, tuned: Model, prompts, new_tokens: int) -> list[dict]:
    """Greedy continuations of each prompt by both models."""
    rows = []
    for prompt in prompts:
        a = generate(base, prompt, max_new_tokens=new_tokens, do_sample=False)
        b = generate(tuned, prompt, max_new_tokens=new_tokens, do_sample=False)
        rows.append({"prompt": prompt, "base": a.text, "tuned": b.text})
    return rows


def baseline(events: list[dict]) -> PerplexityResult | None:
    found = [e for e in events if e.get("event") == "baseline"]
    if not found:
        return None
    names = {f.name for f in dataclasses.fields(PerplexityResult)}
    return PerplexityResult(**{k: v for k, v in found[-1].items() if k in names})


def finish(store: Store, folder: Path, config: FinetuneConfig, base: Model, dataset) -> str:
    """Merge, measure, save and add ``config.out``; returns the new model's id."""
    store.catalog.reload()
    if store.catalog.resolve(config.out) is not None:
        raise JobError(f"A model with id '{config.out}' is already in the store; remove it or start a "
                       "job with another --out id.")
    pinned = pinned_dataset_sha256(folder)
    if pinned and dataset.sha256 != pinned:
        raise dataset_changed(folder.name, dataset.id, pinned, dataset.sha256)
    saved = complete_checkpoints(folder)
    if not saved:
        raise JobError("This job has no saved step to merge: resume it and let it train a little first.")
    step, checkpoint = saved[-1]
    from peft import PeftModel

    fresh = AutoModelForCausalLM.from_pretrained(
        base.path, dtype=torch.float32, use_safetensors=True, local_files_only=True, trust_remote_code=False,
    )
    merged = PeftModel.from_pretrained(fresh, str(checkpoint)).merge_and_unload().eval().to(base.device)
    tuned = Model(base.card, merged, base.tokenizer, base.device, "sdpa", base.path, 0.0, store)
    events = read_log(folder)
    window = min(config.ppl_window, base.context_length)
    before = baseline(events) or perplexity(base, dataset, window=window, max_tokens=config.ppl_tokens, reference=False)
    after = perplexity(tuned, dataset, window=window, max_tokens=config.ppl_tokens, reference=False)
    after = dataclasses.replace(after, model=config.out)
    rows = side_by_side(base, tuned, config.prompts, config.new_tokens)
    comparison = {"perplexity_before": before.to_json(), "perplexity_after": after.to_json(), "generations": rows}
    atomic_write_json(folder / "comparison.json", comparison)

    target = folder / "merged"
    with installing(store, "merged", folder.name, target, what="saving the merged model (nothing was added to the store)",
                    fix="press Finish again (`workbench jobs finish`)") as inst:
        merged.save_pretrained(inst.stage, safe_serialization=True)
        base.tokenizer.save_pretrained(inst.stage)
        inst.commit()
    facts = {
        "base": base.card.id, "dataset": dataset.id, "dataset_sha256": dataset.sha256, "job": folder.name,
        "steps": step, "perplexity_before": before.perplexity, "perplexity_after": after.perplexity,
        "eval_tokens": after.tokens, "eval_window": after.window, "eval_stride": after.stride,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    description = (
        f"{base.card.name} fine-tuned with LoRA on {dataset.name} for {step} steps, merged. Held-out "
        f"perplexity {before.perplexity:.2f} before, {after.perplexity:.2f} after ({after.tokens} tokens)."
    )
    caps = tuple(sorted(base.card.capabilities))
    card = store.add(
        config.out, local_dir=target, name=f"{base.card.name} + {dataset.name.split(':')[0]} (LoRA)",
        description=description, extra_toml=finetune_toml(facts, config.hyperparameters(), loss_curve(events)),
        capabilities=caps,
    )
    record_quality(store, before)
    record_quality(store, after)
    append_log(folder, event="finished", model_id=card.id, step=step,
               perplexity_before=before.perplexity, perplexity_after=after.perplexity)
    return card.id
