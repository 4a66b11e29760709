"""The jobs registry: fine-tuning jobs as folders under ``<store>/jobs/``, their state and log,
and starting, stopping and resuming their worker process.

One job folder::

    config.json     the ``FinetuneConfig``
    state.json      written by the worker (atomically): status, step, saved step, pid, error
    log.jsonl       one JSON object a line: baseline, step, eval, saved, stopped, finished, failed
    stop            present while a stop is requested
    checkpoints/    the Trainer's checkpoints; ``checkpoint-N/.complete`` marks a whole one
    merged/         the merged model once finished (the new store model's source)
    worker.log      the worker's stdout and stderr

**One job at a time on this machine** (2 cores): starting or resuming while another job is
running is *refused* with a message that names the running job and how to stop it (no queue:
a queued job would start at an unknown time, which a person watching a page cannot plan for).

A job whose worker died (SIGKILL, power loss) is reported as ``stopped`` at its last *complete*
checkpoint; a resume continues from there. Nothing of a job is in the model store until the
finish step adds the merged model through ``Store.add`` (staging + atomic rename).

**Checked when a job is made**, so that a job that trains can also finish: the new model's id
follows the store's id rule and is neither in the store nor the ``out`` of another unfinished
job; the dataset exists and its sha256 is pinned in ``state.json`` (a resume, and the worker,
refuse when it has changed). A job id reaches the filesystem only when it matches
``JOB_ID_PATTERN`` (``YYYYmmdd-HHMMSS-<model id>``: no '/', '..' or spaces).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import atomic_write_text, file_lock, pid_alive
from ..errors import JobError
from ..store import Store
from ..store.catalog import ID_PATTERN
from ..store.sources import sha256_file
from .config import FinetuneConfig, check_out_id

RUNNING, STOPPING, FINISHING, STOPPED, TRAINED, FINISHED, FAILED = (
    "running", "stopping", "finishing", "stopped", "trained", "finished", "failed",
)
ACTIVE = (RUNNING, STOPPING, FINISHING)
WORKER_MODULE = "workbench.finetune.worker"
_CHILDREN: list[subprocess.Popen] = []  # workers this process started, reaped when polled
JOB_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-" + ID_PATTERN.pattern.removeprefix("^"))  # new_job_id's shape


@dataclass(frozen=True)
class JobStatus:
    """A job as a person sees it. ``saved_step``: the last step whose adapter is on disk."""

    job_id: str
    status: str
    step: int
    max_steps: int
    saved_step: int
    base: str
    dataset: str
    out: str
    pid: int
    error: str
    model_id: str
    eta_s: float | None
    note: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_job_id(job_id: str) -> str:
    """``job_id`` if it has the shape ``new_job_id`` gives (so it names one folder under
    ``jobs/``, never a path elsewhere), else ``JobError``."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise JobError(
            f"'{job_id}' is not a job id: job ids look like 20261202-101500-my-model (the start time, then "
            "the new model's id; no '/', '..' or spaces). `workbench jobs` lists them."
        )
    return job_id


def job_dir(store: Store, job_id: str) -> Path:
    """The folder of job ``job_id``; ``JobError`` for an id that is not a job id or not a job."""
    path = store.jobs_dir / check_job_id(job_id)
    if not (path / "config.json").is_file():
        known = ", ".join(j.name for j in sorted(store.jobs_dir.glob("*"))) if store.jobs_dir.is_dir() else ""
        raise JobError(f"No fine-tuning job '{job_id}'. Jobs: {known or 'none'} (`workbench jobs`).")
    return path


def read_config(folder: Path) -> FinetuneConfig:
    return FinetuneConfig.from_json(json.loads((folder / "config.json").read_text(encoding="utf-8")))


def read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(folder: Path, **changes) -> dict:
    """Merge ``changes`` into ``state.json`` (atomic; under the job's lock)."""
    with file_lock(folder / ".state.lock"):
        state = read_state(folder)
        state.update(changes, updated_at=time.time())
        atomic_write_text(folder / "state.json", json.dumps(state, indent=2))
    return state


def append_log(folder: Path, **event) -> None:
    """One JSON line in ``log.jsonl`` (a line is written whole by one ``write``)."""
    event.setdefault("time", time.time())
    with open(folder / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event) + "\n")


def read_log(folder: Path) -> list[dict]:
    """The job's events; a torn last line (a killed writer) is skipped."""
    events = []
    try:
        lines = (folder / "log.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of whole checkpoints (marked ``.complete`` by the worker), oldest first."""
    found = []
    for path in (folder / "checkpoints").glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and (path / ".complete").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def worker_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) fine-tuning worker (a reused pid reads as dead)."""
    for child in list(_CHILDREN):
        if child.poll() is not None:  # reap our own finished children
            _CHILDREN.remove(child)
    return pid_alive(pid, cmdline_has=(WORKER_MODULE,))


def dataset_sha256(store: Store, spec: str) -> str:
    """The sha256 that ``data.loading.load_dataset`` gives ``spec`` (a file's bytes; a store
    dataset's pinned source, "" if its card pins none), without reading any documents. A path
    with no file behind it, or an unknown dataset id, raises with the fix."""
    from ..data.install import catalog
    from ..data.loading import looks_like_path

    spec = str(spec).strip()
    path = Path(spec).expanduser()
    if spec and path.is_file():
        return sha256_file(path)
    if spec and looks_like_path(spec):
        raise JobError(f"There is no file at {path}: pick an existing file, or a store dataset (`workbench datasets`).")
    return catalog(store).get(spec).source.sha256


def pinned_dataset_sha256(folder: Path) -> str:
    """The dataset sha256 the job was made with ("" if none is known): pinned in ``state.json``
    by ``start_job``, else (a job made before pinning) the one its first training run logged."""
    pinned = read_state(folder).get("dataset_sha256", "")
    if pinned:
        return pinned
    return next((e.get("dataset_sha256", "") for e in read_log(folder) if e.get("event") == "data"), "")


def dataset_changed(job_id: str, spec: str, pinned: str, now: str) -> JobError:
    """The error for a job whose dataset's bytes are not the ones it was made with."""
    return JobError(
        f"The dataset of job {job_id} ({spec}) has changed since the job was made (sha256 {pinned[:12]}... "
        f"then, {now[:12]}... now): its saved steps were trained on the old data, so it is not continued "
        "on other data. Put the original file back to resume it, or start a new job on the new data."
    )


def check_new_model_id(store: Store, out: str) -> None:
    """Refuse an ``out`` that a job could never add to the store: not a valid id
    (``InvalidInputError``), a model already in the store (by id or alias), or the ``out`` of
    another job that has not finished (``JobError``; each says what to do instead)."""
    check_out_id(out)
    if store.catalog.resolve(out) is not None:
        raise JobError(f"A model with id '{out}' is already in the store; pick another --out id.")
    for job in list_jobs(store):
        if job.out == out and job.status != FINISHED:
            raise JobError(
                f"Job {job.job_id} ({job.status}) already makes a model '{out}': finish it, or delete it "
                f"(`workbench jobs delete {job.job_id}`), or pick another --out id."
            )


def status(store: Store, job_id: str) -> JobStatus:
    folder = job_dir(store, job_id)
    config = read_config(folder)
    state = read_state(folder)
    saved = complete_checkpoints(folder)
    saved_step = saved[-1][0] if saved else 0
    current = state.get("status", STOPPED)
    note = ""
    if current in ACTIVE and not worker_alive(int(state.get("pid", 0))):
        what = "finishing" if current == FINISHING else "training"
        note = (f"The worker died while {what} (killed or out of memory); the last saved step is "
                f"{saved_step}. Resume to continue from there.")
        current = STOPPED if current != FINISHING else TRAINED
    eta = state.get("eta_s") if current in (RUNNING, STOPPING) else None
    return JobStatus(
        job_id=job_id, status=current, step=int(state.get("step", saved_step)),
        max_steps=int(state.get("max_steps", config.max_steps)), saved_step=saved_step,
        base=config.base, dataset=config.dataset, out=config.out, pid=int(state.get("pid", 0)),
        error=state.get("error", ""), model_id=state.get("model_id", ""), eta_s=eta, note=note,
    )


def list_jobs(store: Store) -> list[JobStatus]:
    """All jobs, newest first."""
    if not store.jobs_dir.is_dir():
        return []
    folders = [p for p in store.jobs_dir.iterdir()
               if JOB_ID_PATTERN.fullmatch(p.name) and (p / "config.json").is_file()]
    return [status(store, p.name) for p in sorted(folders, key=lambda p: p.name, reverse=True)]


def stray_folders(store: Store) -> list[Path]:
    """Folders under ``jobs/`` whose names are not job ids (made by an older version, or by hand):
    never listed or touched as jobs; ``workbench jobs`` names them so they can be deleted by hand."""
    if not store.jobs_dir.is_dir():
        return []
    return sorted(p for p in store.jobs_dir.iterdir() if p.is_dir() and not JOB_ID_PATTERN.fullmatch(p.name))


def active_job(store: Store) -> JobStatus | None:
    return next((j for j in list_jobs(store) if j.active), None)


def _refuse_if_busy(store: Store) -> None:
    busy = active_job(store)
    if busy is not None:
        raise JobError(
            f"Job {busy.job_id} ({busy.base} -> {busy.out}) is {busy.status}: this machine runs one "
            f"fine-tuning job at a time, so this one was not started (nothing queued). Wait for it, "
            f"or stop it: `workbench jobs stop {busy.job_id}` (or Stop on the Customise page)."
        )


def _spawn(store: Store, folder: Path, mode: str) -> int:
    env = dict(os.environ, WORKBENCH_HOME=str(store.home), PYTHONUNBUFFERED="1")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with open(folder / "worker.log", "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, str(folder), "--mode", mode],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # a closed terminal or a reloaded page does not kill the job
        )
    _CHILDREN.append(proc)
    return proc.pid


def new_job_id(config: FinetuneConfig) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{config.out}"


def start_job(store: Store, config: FinetuneConfig) -> str:
    """Create a job for ``config`` and start its worker; returns the job id. Refuses, before
    anything is written: an unknown or uninstalled base model, an ``out`` that
    ``check_new_model_id`` refuses, a dataset that is not there, and another running job."""
    store.catalog.reload()
    base = store.card(config.base)  # UnknownModelError lists the valid ids
    store.path(base.id)  # installed?
    check_new_model_id(store, config.out)
    sha = dataset_sha256(store, config.dataset)
    with store.lock("finetune-jobs"):
        _refuse_if_busy(store)
        check_new_model_id(store, config.out)  # again under the lock: a job made meanwhile
        store.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_id = check_job_id(new_job_id(config))
        folder = store.jobs_dir / job_id
        folder.mkdir()
        atomic_write_text(folder / "config.json", config.dumps())
        write_state(folder, status=RUNNING, step=0, max_steps=config.max_steps, pid=0, dataset_sha256=sha)
        write_state(folder, pid=_spawn(store, folder, "train"))
    return job_id


def stop_job(store: Store, job_id: str) -> str:
    """Ask a running job to stop: it saves its adapter at the end of the current step and exits.
    Returns what happened, for a person (asking twice says so, and changes nothing)."""
    folder = job_dir(store, job_id)
    now = status(store, job_id)
    if now.status not in (RUNNING, STOPPING):
        return f"Job {job_id} is {now.status}, not training: there is nothing to stop."
    if (folder / "stop").exists():
        return (f"Stop was already asked for job {job_id}; it saves at the end of the current step "
                "(a step can take a while on a CPU) and then stops.")
    atomic_write_text(folder / "stop", str(time.time()))
    write_state(folder, status=STOPPING)
    return f"Stopping job {job_id}: it saves its adapter at the end of the current step."


def resume_job(store: Store, job_id: str) -> str:
    """Continue a stopped job from its last saved checkpoint (refused while another job runs)."""
    folder = job_dir(store, job_id)
    now = status(store, job_id)
    if now.status not in (STOPPED, FAILED):
        raise JobError(f"Job {job_id} is {now.status}; only a stopped or failed job can be resumed.")
    config = read_config(folder)
    pinned, current = pinned_dataset_sha256(folder), dataset_sha256(store, config.dataset)
    if pinned and current != pinned:
        raise dataset_changed(job_id, config.dataset, pinned, current)
    with store.lock("finetune-jobs"):
        _refuse_if_busy(store)
        (folder / "stop").unlink(missing_ok=True)
        write_state(folder, status=RUNNING, error="", pid=0)
        write_state(folder, pid=_spawn(store, folder, "train"))
    return f"Resumed job {job_id} from step {now.saved_step}."


def finish_job(store: Store, job_id: str) -> str:
    """Merge a stopped or trained job's last saved adapter and add the result to the store (in
    the worker process: the caller returns at once)."""
    folder = job_dir(store, job_id)
    now = status(store, job_id)
    if now.status not in (STOPPED, TRAINED):
        raise JobError(f"Job {job_id} is {now.status}; finish a stopped or trained job.")
    if now.saved_step == 0:
        raise JobError(f"Job {job_id} has no saved step yet: resume it and let it train a little first.")
    with store.lock("finetune-jobs"):
        _refuse_if_busy(store)
        write_state(folder, status=FINISHING, error="", pid=0)
        write_state(folder, pid=_spawn(store, folder, "finish"))
    return f"Finishing job {job_id} from step {now.saved_step}: merging and adding {now.out} to the store."


def wait(store: Store, job_id: str, poll_s: float = 1.0, on_update=None, timeout_s: float | None = None) -> JobStatus:
    """Block until the job is no longer active; ``on_update(status, events)`` after each poll."""
    start = time.monotonic()
    while True:
        now = status(store, job_id)
        if on_update is not None:
            on_update(now, read_log(store.jobs_dir / job_id))
        if not now.active:
            return now
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise JobError(f"Job {job_id} is still {now.status} after {timeout_s:.0f} s.")
        time.sleep(poll_s)


def delete_job(store: Store, job_id: str) -> None:
    """Delete a job's folder (not the model it made, which is in the store on its own)."""
    folder = job_dir(store, job_id)
    if status(store, job_id).active:
        raise JobError(f"Job {job_id} is running; stop it first.")
    store.discard_path(folder)  # gone at once, in one rename


def comparison(store: Store, job_id: str) -> dict | None:
    """The finished job's before/after (perplexity of both models, generations side by side)."""
    try:
        return json.loads((job_dir(store, job_id) / "comparison.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def events(store: Store, job_id: str) -> list[dict]:
    """The job's log events (see ``read_log``)."""
    return read_log(job_dir(store, job_id))
