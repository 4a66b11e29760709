"""What a fine-tuning job is asked to do: ``FinetuneConfig``, a frozen dataclass saved as the
job's ``config.json``. Validation says which setting to change; no torch here.

The defaults are chosen to give SmolLM2-135M a visible drop in held-out perplexity on the
shipped Shakespeare corpus in a few minutes on a 2-core CPU (``benchmarks/finetune_bench.py``
measures it on a machine); ``max_steps=40`` goes further.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import InvalidInputError
from ..store.catalog import ID_PATTERN  # the store's rule for model ids, custom models included

MAX_ID_LENGTH = 64  # what ID_PATTERN admits
DATA_SUFFIXES = (".txt", ".jsonl", ".json", ".md", ".ndjson")  # dropped from a file's name in a proposed id

DEFAULT_PROMPTS = ("The king said", "My love is like", "Tell me about the sea.")


def _slug(text: str) -> str:
    """``text`` as id characters: accents dropped, lowercase, each run of anything but a-z, 0-9,
    '.' and '_' one '-', no separator at either end ("My notés (v2)" -> "my-notes-v2")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9._]+", "-", ascii_text.lower()).strip("-._")


def proposed_out_id(base_id: str, dataset_name: str, taken: Callable[[str], bool] = lambda _: False) -> str:
    """A valid id for the model a job on ``dataset_name`` (a file name or a store dataset id)
    makes from ``base_id``: ``<base>-<file stem>`` as id characters, at most 64 of them
    ("smollm2-135m-instruct" + "my notes.txt" -> "smollm2-135m-instruct-my-notes"), ``-tuned``
    when the name leaves nothing, and ``-2``, ``-3``... appended while ``taken(id)`` is true.
    Always passes ``check_out_id``; ``taken`` is not consulted for anything else."""
    name = Path(dataset_name).name
    stem = _slug(Path(name).stem if Path(name).suffix.lower() in DATA_SUFFIXES else name) or "tuned"
    base = _slug(base_id) or "model"

    def fit(suffix: str = "") -> str:
        return (f"{base}-{stem}"[: MAX_ID_LENGTH - len(suffix)].rstrip("-._") + suffix)

    candidate, n = fit(), 2
    while taken(candidate):
        candidate, n = fit(f"-{n}"), n + 1
    return candidate


def check_out_id(out: str) -> str:
    """``out`` if it is a valid id for a new store model (the store's ``ID_PATTERN``), else
    ``InvalidInputError`` naming the rule and a valid id made from it."""
    if not isinstance(out, str) or not ID_PATTERN.fullmatch(out):
        fixed = _slug(str(out))[:MAX_ID_LENGTH].rstrip("-._")
        hint = f", e.g. '{fixed}'" if fixed and ID_PATTERN.fullmatch(fixed) else ""
        raise InvalidInputError(
            f"'{out}' is not a valid id for the new model: use 1 to {MAX_ID_LENGTH} lowercase letters, "
            f"digits, '.', '_' or '-', starting with a letter or digit (no spaces or '/'){hint}."
        )
    return out


@dataclass(frozen=True)
class FinetuneConfig:
    base: str  # store model id or alias
    dataset: str  # store dataset id, or the path of the user's file
    out: str  # id of the new store model
    # LoRA (peft)
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("all-linear",)  # peft's shorthand: every linear but the head
    # optimisation (transformers' Trainer)
    learning_rate: float = 1e-3
    max_steps: int = 8  # 0: train for ``epochs`` instead
    epochs: float = 1.0
    seq_length: int = 128
    batch_size: int = 4
    warmup_steps: int = 1  # of 8 steps: 4 spent half the run below the set rate
    seed: int = 0
    eval_every: int = 4  # steps between evaluations (and checkpoints)
    eval_tokens: int = 512  # held-out tokens of each evaluation's loss (4 blocks of 128)
    # before/after
    ppl_window: int = 256
    ppl_tokens: int = 512
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    new_tokens: int = 32
    device: str = "auto"
    threads: int = 0  # 0: the CPUs other work leaves free (worker.training_threads)
    auto_finish: bool = True  # merge and add to the store when training ends (not when stopped)

    def __post_init__(self):
        for name in ("rank", "alpha", "seq_length", "batch_size", "eval_every", "eval_tokens",
                     "ppl_window", "ppl_tokens", "new_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidInputError(f"{name} is {getattr(self, name)!r}: it must be a whole number of at least 1.")
        if self.max_steps < 0 or (self.max_steps == 0 and not self.epochs > 0):
            raise InvalidInputError("Give a number of steps (max_steps > 0) or of epochs (epochs > 0).")
        if not 0 < self.learning_rate < 1:
            raise InvalidInputError(f"learning_rate {self.learning_rate} is out of range: try 1e-4 to 2e-3.")
        if not 0 <= self.dropout < 1:
            raise InvalidInputError("dropout must be at least 0 and below 1.")
        if not self.target_modules:
            raise InvalidInputError("Name at least one target module (e.g. q_proj, v_proj, or all-linear).")
        if self.seq_length < 8:
            raise InvalidInputError("seq_length must be at least 8 tokens.")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FinetuneConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("target_modules", "prompts"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def hyperparameters(self) -> dict:
        """The settings that shape the trained weights (recorded on the new model's card)."""
        keep = ("rank", "alpha", "dropout", "target_modules", "learning_rate", "max_steps", "epochs",
                "seq_length", "batch_size", "warmup_steps", "seed")
        data = self.to_json()
        return {k: list(data[k]) if isinstance(data[k], tuple) else data[k] for k in keep}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
