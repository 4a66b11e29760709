"""Fine-tuning a store model with LoRA into a new store model.

- ``config``: ``FinetuneConfig`` (LoRA and training settings, before/after settings).
- ``jobs``: the jobs registry under ``<store>/jobs``: start, stop, resume, finish, wait, status
  (one job at a time; a second is refused). No torch.
- ``worker``: the process a job runs in (``python -m workbench.finetune.worker``).
- ``blocks``: documents -> packed token blocks; ``callback``: the JSONL log, ETA and stop.
- ``finish``: merge_and_unload, before/after, save, and the new card through ``Store.add``.

    from workbench.finetune import FinetuneConfig, start_job, wait
    job = start_job(store, FinetuneConfig("smollm2", "shakespeare", "smollm2-bard"))
    wait(store, job)
"""
from ..common import lazy_exports

_NAMES = {
    "FinetuneConfig": ".config",
    **dict.fromkeys(("JobStatus", "start_job", "stop_job", "resume_job", "finish_job", "wait", "status",
                     "list_jobs", "active_job", "read_log", "job_dir", "delete_job", "comparison", "events"), ".jobs"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
