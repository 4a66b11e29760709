"""The fine-tuning worker process: ``python -m workbench.finetune.worker JOB_DIR --mode train|finish``.

Started by ``jobs.start_job`` / ``resume_job`` / ``finish_job`` in its own session, so the page
or terminal that started it can go away. ``train``: measure the base model's held-out
perplexity (first run only), wrap the base in a LoRA adapter (peft), and train with transformers'
``Trainer`` (the same job runs on GPUs under ``accelerate launch``), resuming from the last whole
checkpoint if there is one; ``JobCallback`` logs and stops. When training ends without a stop and
``auto_finish`` is set, the finish step follows (``finish.finish``). Every outcome is written to
``state.json`` and ``log.jsonl``; an error's message (with its fix) becomes the job's ``error``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
from pathlib import Path

from ..errors import WorkbenchError
from ..store import Store
from .config import FinetuneConfig
from .jobs import (
    FAILED,
    FINISHED,
    FINISHING,
    RUNNING,
    STOPPED,
    TRAINED,
    append_log,
    complete_checkpoints,
    dataset_changed,
    pinned_dataset_sha256,
    read_config,
    read_log,
    write_state,
)


def training_threads(requested: int, cpus: int, load1: float) -> int:
    """torch's intra-op CPU threads for a job: ``requested`` when above 0; else the CPUs other
    work leaves free, ``cpus - round(1-minute load average)``, at least 1 and at most ``cpus``.

    Threads of one operation wait for each other at its end, so on a busy CPU two threads lose to
    one (``benchmarks/lora_step_bench.py`` times one step per thread count on a machine)."""
    if requested > 0:
        return requested
    return max(1, min(cpus, cpus - round(load1)))


def _load(store: Store, config: FinetuneConfig):
    from ..common import cpu_count
    from ..data.loading import load_dataset
    from ..runtime.devices import set_threads
    from ..runtime.loading import load_model

    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # before this job adds its own
    threads = set_threads(training_threads(config.threads, cpu_count(), load1))
    model = load_model(config.base, store=store, device=config.device)
    return model, load_dataset(store, config.dataset), {"threads": threads, "load_average": round(load1, 2)}


def train(store: Store, folder: Path, config: FinetuneConfig) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, set_seed

    from ..quality.evaluation import perplexity
    from .blocks import build_blocks
    from .callback import JobCallback

    set_seed(config.seed)
    model, dataset, cpu = _load(store, config)
    pinned = pinned_dataset_sha256(folder)
    if pinned and dataset.sha256 != pinned:  # changed after the job was made (a resume checks too)
        raise dataset_changed(folder.name, config.dataset, pinned, dataset.sha256)
    if config.seq_length > model.context_length:
        raise WorkbenchError(f"seq_length {config.seq_length} is longer than {model.card.id}'s context "
                             f"({model.context_length}); lower it.")
    if not any(e.get("event") == "baseline" for e in read_log(folder)):
        window = min(config.ppl_window, model.context_length)
        before = perplexity(model, dataset, window=window, max_tokens=config.ppl_tokens, reference=False)
        append_log(folder, event="baseline", **before.to_json())
    need = config.max_steps * config.batch_size if config.max_steps else None
    train_blocks, eval_blocks, facts = build_blocks(
        model.tokenizer, dataset, config.seq_length, need, config.eval_tokens, config.seed
    )
    append_log(folder, event="data", train_blocks=len(train_blocks), eval_blocks=len(eval_blocks),
               seq_length=config.seq_length, dataset=dataset.id, dataset_sha256=dataset.sha256, **facts,
               **cpu, device=str(model.device))
    targets = "all-linear" if tuple(config.target_modules) == ("all-linear",) else list(config.target_modules)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model.module, lora)
    except ValueError as err:
        raise WorkbenchError(f"LoRA cannot wrap {model.card.id}: {err}. Name target modules the model has "
                             "(e.g. q_proj, v_proj), or use all-linear.") from err
    args = TrainingArguments(
        output_dir=str(folder / "checkpoints"), max_steps=config.max_steps or -1,
        num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps, lr_scheduler_type="cosine", logging_steps=1,
        eval_strategy="steps", eval_steps=config.eval_every, save_strategy="steps",
        save_steps=config.eval_every, save_total_limit=2, seed=config.seed, report_to=[],
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        use_cpu=not str(model.device).startswith("cuda"), save_only_model=False,
    )
    callback = JobCallback(folder, config.batch_size * config.seq_length)
    trainer = Trainer(model=peft_model, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks,
                      callbacks=[callback])
    saved = complete_checkpoints(folder)
    for path in (folder / "checkpoints").glob("checkpoint-*"):
        if path not in [p for _, p in saved]:
            shutil.rmtree(path, ignore_errors=True)  # half-written by a killed run
    resume = str(saved[-1][1]) if saved else None
    if resume is None:
        trainer.evaluate()  # the eval loss at step 0, where the curve starts (logged by the callback)
    write_state(folder, status=RUNNING, pid=os.getpid(), max_steps=trainer.args.max_steps)
    trainer.train(resume_from_checkpoint=resume)
    step = trainer.state.global_step
    if callback.stop_requested:
        (folder / "stop").unlink(missing_ok=True)
        append_log(folder, event="stopped", step=step)
        write_state(folder, status=STOPPED, step=step, eta_s=None)
        return STOPPED
    if not complete_checkpoints(folder) or complete_checkpoints(folder)[-1][0] < step:
        last = folder / "checkpoints" / f"checkpoint-{step}"
        trainer.save_model(str(last))
        (last / ".complete").write_text("final")
        append_log(folder, event="saved", step=step)
    append_log(folder, event="trained", step=step)
    # With auto_finish the finish step follows in this process: the state goes straight to
    # "finishing", so nobody polling in between reads "trained" (not active) and stops waiting.
    write_state(folder, status=FINISHING if config.auto_finish else TRAINED, step=step, eta_s=None)
    del trainer, peft_model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return TRAINED


def finish_step(store: Store, folder: Path, config: FinetuneConfig) -> str:
    from ..runtime.loading import unload
    from .finish import finish

    write_state(folder, status=FINISHING, pid=os.getpid())
    unload(config.base)  # the training run changed the cached module in place (LoRA layers)
    model, dataset, _ = _load(store, config)
    model_id = finish(store, folder, config, model, dataset)
    write_state(folder, status=FINISHED, model_id=model_id)
    return FINISHED


def run(folder: Path, mode: str) -> int:
    """Run the job in ``folder``; any error ends as the job's ``error`` (status ``failed``, or
    ``trained`` when training had ended and only the finish step failed: Finish can be retried)."""
    store = Store()
    config = read_config(folder)
    write_state(folder, pid=os.getpid(), status=FINISHING if mode == "finish" else RUNNING)
    phase = mode
    try:
        outcome = train(store, folder, config) if mode == "train" else TRAINED
        if outcome == TRAINED and (mode == "finish" or config.auto_finish):
            phase = "finish"
            finish_step(store, folder, config)
        return 0
    except WorkbenchError as err:
        message = str(err)
    except Exception as err:  # noqa: BLE001 -- the worker's boundary: record it for the page and the CLI, then exit
        traceback.print_exc()
        message = f"{type(err).__name__}: {err} (see worker.log in {folder})"
    append_log(folder, event="failed", error=message)
    after = TRAINED if phase == "finish" and complete_checkpoints(folder) else FAILED
    write_state(folder, status=after, error=message)
    print(message, file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_dir")
    parser.add_argument("--mode", choices=("train", "finish"), default="train")
    args = parser.parse_args(argv)
    return run(Path(args.job_dir), args.mode)


if __name__ == "__main__":
    sys.exit(main())
