"""The ``TrainerCallback`` that makes a job observable and stoppable: it appends each step's train
loss, tokens/s and ETA and each evaluation's loss to the job's ``log.jsonl``, keeps
``state.json`` current, marks whole checkpoints ``.complete``, and when the ``stop`` file appears
asks the Trainer to save at the end of this step and stop.

ETA = (wall time of this run so far / steps done in this run) x steps left, so evaluations and
checkpoints are counted in, as a person waiting counts them.
"""
from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from .jobs import RUNNING, STOPPING, append_log, write_state


class JobCallback(TrainerCallback):
    def __init__(self, folder: Path, tokens_per_step: int):
        self.folder = Path(folder)
        self.tokens_per_step = tokens_per_step
        self.started = time.perf_counter()
        self.first_step: int | None = None
        self.step_started = self.started
        self.stop_requested = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.first_step = state.global_step
        write_state(self.folder, status=RUNNING, step=state.global_step, max_steps=state.max_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if (self.folder / "stop").exists() and not self.stop_requested:
            self.stop_requested = True
            control.should_save = True  # the adapter of this very step is kept
            control.should_training_stop = True
            write_state(self.folder, status=STOPPING)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        now = time.perf_counter()
        done = state.global_step - (self.first_step or 0)
        elapsed = now - self.started
        if "loss" in logs:
            per_step = elapsed / max(done, 1)
            eta = per_step * max(state.max_steps - state.global_step, 0)
            event = {
                "event": "step", "step": state.global_step, "max_steps": state.max_steps,
                "loss": float(logs["loss"]), "learning_rate": float(logs.get("learning_rate", 0.0)),
                "epoch": float(state.epoch or 0.0), "tokens_per_s": done * self.tokens_per_step / max(elapsed, 1e-9),
                "step_s": now - self.step_started, "step_tokens": self.tokens_per_step, "elapsed_s": elapsed,
                "eta_s": eta,
            }
            append_log(self.folder, **event)
            write_state(self.folder, step=state.global_step, eta_s=eta, tokens_per_s=event["tokens_per_s"])
        if "eval_loss" in logs:
            append_log(self.folder, event="eval", step=state.global_step, eval_loss=float(logs["eval_loss"]))

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            (checkpoint / ".complete").write_text(str(time.time()))
            append_log(self.folder, event="saved", step=state.global_step)
