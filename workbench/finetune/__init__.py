"""Fine-tuning a store model with LoRA into a new store model.

- ``config``: ``FinetuneConfig`` (LoRA and training settings, before/after settings), the new
  model's id rule (``check_out_id``) and a valid id proposed from a file name (``proposed_out_id``).
- ``jobs``: the jobs registry under ``<store>/jobs``: start, stop, resume, finish, wait, status
  (one job at a time; a second is refused; ids, the new model's id and the dataset checked when a
  job is made). No torch.
- ``worker``: the process a job runs in (``python -m workbench.finetune.worker``).
- ``blocks``: documents -> packed token blocks; ``callback``: the JSONL log, ETA and stop.
- ``finish``: merge_and_unload, before/after, save, and the new card through ``Store.add``.

    from workbench.finetune import FinetuneConfig, start_job, wait
    job = start_job(store, FinetuneConfig("smollm2", "shakespeare", "smollm2-bard"))
    wait(store, job)
"""
from ..common import lazy_exports

_NAMES = {
    **dict.fromkeys(("FinetuneConfig", "proposed_out_id", "check_out_id"), ".config"),
    **dict.fromkeys(("JobStatus", "start_job", "stop_job", "resume_job", "finish_job", "wait", "status",
                     "list_jobs", "active_job", "read_log", "job_dir", "delete_job", "comparison", "events",
                     "check_job_id", "check_new_model_id"), ".jobs"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
