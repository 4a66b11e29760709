"""A fine-tuning job is checked when it is made, so one that trains can also finish: the new
model's id (the store's rule, not in the store, not another unfinished job's), the dataset (there,
and its sha256 pinned: a resume onto changed data is refused), and job ids that never reach the
filesystem as paths."""
import json
import subprocess
import sys
import time

import pytest

from workbench.errors import InvalidInputError, JobError, WorkbenchError
from workbench.finetune import FinetuneConfig, events, resume_job, start_job, status, stop_job, wait
from workbench.finetune import jobs
from workbench.finetune.config import check_out_id, proposed_out_id
from workbench.store.catalog import ID_PATTERN
from workbench.testing import tiny_models

FAST = dict(seq_length=32, batch_size=4, eval_every=2, eval_tokens=96, ppl_window=32, ppl_tokens=128,  # noqa: C408
            learning_rate=5e-3, warmup_steps=1, new_tokens=4, prompts=("Once upon",))


@pytest.fixture
def text_file(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:90]))
    return f


def no_jobs(store) -> bool:
    return not store.jobs_dir.exists() or not list(store.jobs_dir.iterdir())


@pytest.mark.parametrize(("base", "name", "expected"), [
    ("smollm2-135m-instruct", "my notes.txt", "smollm2-135m-instruct-my-notes"),
    ("smollm2-135m-instruct", "shakespeare", "smollm2-135m-instruct-shakespeare"),
    ("tiny-llama", "Café Notes (v2).JSONL", "tiny-llama-cafe-notes-v2"),
    ("tiny-llama", "....txt", "tiny-llama-tuned"),
    ("tiny-llama", "/uploads/../a b/../../x y.md", "tiny-llama-x-y"),
    ("tiny-llama", "wiki.v2", "tiny-llama-wiki.v2"),  # a store dataset id keeps its dot
])
def test_proposed_ids_are_valid_store_ids(base, name, expected):
    assert proposed_out_id(base, name) == expected
    assert check_out_id(expected) == expected


def test_a_proposal_fits_and_skips_taken_ids():
    long = proposed_out_id("b" * 60, "a long file name with words.txt")
    assert len(long) == 64 and ID_PATTERN.match(long)
    taken = {"tiny-my-notes", "tiny-my-notes-2"}
    assert proposed_out_id("tiny", "my notes.txt", taken=taken.__contains__) == "tiny-my-notes-3"
    full = proposed_out_id("c" * 64, "x.txt", taken={"c" * 64}.__contains__)
    assert full == "c" * 62 + "-2" and ID_PATTERN.match(full)


@pytest.mark.parametrize("out", ["My Notes", "my notes", "../x", "a/b", "", "-x", "x" * 65, "ok\n"])
def test_an_invalid_out_id_is_refused_when_the_job_is_made(tiny_store, text_file, out):
    with pytest.raises(InvalidInputError, match="not a valid id for the new model"):
        start_job(tiny_store, FinetuneConfig("tiny-llama", str(text_file), out, max_steps=2, **FAST))
    assert no_jobs(tiny_store)


def test_the_fix_is_in_the_message():
    with pytest.raises(InvalidInputError, match="e.g. 'my-notes'"):
        check_out_id("My Notes")


def _fake_job(store, job_id: str, out: str, dataset: str, state: str = "stopped"):
    folder = store.jobs_dir / job_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(FinetuneConfig("tiny-llama", dataset, out).dumps())
    (folder / "state.json").write_text(json.dumps({"status": state, "pid": 0}))
    return folder


def test_an_out_id_another_unfinished_job_makes_is_refused(tiny_store, text_file):
    _fake_job(tiny_store, "20260101-000000-tiny-x", "tiny-x", str(text_file))
    with pytest.raises(JobError, match="already makes a model 'tiny-x'.*workbench jobs delete 20260101-000000-tiny-x"):
        start_job(tiny_store, FinetuneConfig("tiny-llama", str(text_file), "tiny-x", max_steps=2, **FAST))
    assert [j.job_id for j in jobs.list_jobs(tiny_store)] == ["20260101-000000-tiny-x"]


def test_a_missing_dataset_is_refused_when_the_job_is_made(tiny_store, tmp_path):
    with pytest.raises(JobError, match="no file at"):
        start_job(tiny_store, FinetuneConfig("tiny-llama", str(tmp_path / "gone.txt"), "tiny-x", max_steps=2, **FAST))
    with pytest.raises(WorkbenchError, match="Unknown dataset 'no-such-set'"):
        start_job(tiny_store, FinetuneConfig("tiny-llama", "no-such-set", "tiny-x", max_steps=2, **FAST))
    assert no_jobs(tiny_store)


def test_the_cli_refuses_a_bad_out_before_installing_the_base(tiny_store, text_file, monkeypatch, capsys):
    from workbench.cli import finetune as cli_finetune
    from workbench.cli import main

    monkeypatch.setattr(cli_finetune, "ensure_installed", lambda *a: pytest.fail("installed before the check"))
    assert main(["finetune", "tiny-llama", "--dataset", str(text_file), "--out", "My Notes"]) != 0
    assert "not a valid id" in capsys.readouterr().err
    assert no_jobs(tiny_store)


PATH_LIKE = ["../decoy", "..", "a/b", "20260101-000000-x/../../decoy", "my job", "", "20260101-000000-X"]


def test_path_like_job_ids_never_reach_the_filesystem(tiny_store, text_file):
    decoy = tiny_store.home / "decoy"  # a job-shaped folder outside jobs/: ../decoy would name it
    decoy.mkdir(parents=True)
    (decoy / "config.json").write_text(FinetuneConfig("tiny-llama", str(text_file), "tiny-x").dumps())
    (decoy / "state.json").write_text(json.dumps({"status": "stopped", "pid": 0}))
    (decoy / "comparison.json").write_text("{}")
    spaced = _fake_job(tiny_store, "my job", "tiny-y", str(text_file))  # a name new_job_id never makes
    calls = {
        "status": lambda i: jobs.status(tiny_store, i), "stop": lambda i: jobs.stop_job(tiny_store, i),
        "resume": lambda i: jobs.resume_job(tiny_store, i), "finish": lambda i: jobs.finish_job(tiny_store, i),
        "delete": lambda i: jobs.delete_job(tiny_store, i), "events": lambda i: jobs.events(tiny_store, i),
        "comparison": lambda i: jobs.comparison(tiny_store, i), "wait": lambda i: jobs.wait(tiny_store, i),
        "job_dir": lambda i: jobs.job_dir(tiny_store, i),
    }
    for job_id in PATH_LIKE + [str(decoy)]:
        for call in calls.values():
            with pytest.raises(JobError, match="is not a job id"):
                call(job_id)
    assert (decoy / "config.json").is_file() and (spaced / "config.json").is_file()  # nothing deleted
    assert not (decoy / "stop").exists() and jobs.read_state(decoy) == {"status": "stopped", "pid": 0}
    assert jobs.list_jobs(tiny_store) == []  # a folder that is not a job id is not listed
    assert jobs.stray_folders(tiny_store) == [spaced]  # but named, so it can be deleted by hand


def test_the_jobs_command_refuses_a_path_like_job_id(tiny_store, text_file, capsys):
    from workbench.cli import main

    decoy = tiny_store.home / "decoy"
    decoy.mkdir(parents=True)
    (decoy / "config.json").write_text(FinetuneConfig("tiny-llama", str(text_file), "tiny-x").dumps())
    for action in ("attach", "stop", "resume", "finish", "delete"):
        assert main(["jobs", action, "../decoy"]) == 2, action
        assert "is not a job id" in capsys.readouterr().err, action
    assert (decoy / "config.json").is_file()


def test_worker_alive_is_the_common_pid_check(monkeypatch):
    seen = []
    monkeypatch.setattr(jobs, "pid_alive", lambda pid, cmdline_has=(): seen.append((pid, cmdline_has)) or True)
    assert jobs.worker_alive(4242) and seen == [(4242, (jobs.WORKER_MODULE,))]


def test_worker_alive_reads_the_command_line():
    code = "import time; time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", code, jobs.WORKER_MODULE])
    other = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert jobs.worker_alive(worker.pid) and not jobs.worker_alive(other.pid)
    finally:
        for proc in (worker, other):
            proc.kill()
            proc.wait()
    assert not jobs.worker_alive(worker.pid)


def test_resume_refuses_a_changed_dataset_until_it_is_put_back(tiny_store, text_file):
    from workbench.finetune.worker import train

    original = text_file.read_bytes()
    job = start_job(tiny_store, FinetuneConfig("tiny-llama", str(text_file), "tiny-pinned", max_steps=400, **FAST))
    start = time.monotonic()
    while not any(e["event"] == "saved" for e in events(tiny_store, job)):
        assert time.monotonic() - start < 300 and status(tiny_store, job).active, status(tiny_store, job)
        time.sleep(0.3)
    stop_job(tiny_store, job)
    assert wait(tiny_store, job, poll_s=0.3, timeout_s=300).status == "stopped"

    text_file.write_text("\n".join(reversed(tiny_models.CORPUS[:90])))  # other data, same path
    with pytest.raises(JobError, match="has changed since the job was made.*Put the original file back"):
        resume_job(tiny_store, job)
    assert status(tiny_store, job).status == "stopped"
    folder = jobs.job_dir(tiny_store, job)
    with pytest.raises(JobError, match="has changed"):  # the worker checks too (a change after the resume)
        train(tiny_store, folder, jobs.read_config(folder))

    text_file.write_bytes(original)
    assert "Resumed" in resume_job(tiny_store, job)
    stop_job(tiny_store, job)  # asked at once: it stops at the end of its first step
    final = wait(tiny_store, job, poll_s=0.3, timeout_s=300)
    assert final.status == "stopped" and not final.error, final

    text_file.write_text("\n".join(reversed(tiny_models.CORPUS[:90])))  # finish merges what was trained, measured on the same data
    jobs.finish_job(tiny_store, job)
    failed = wait(tiny_store, job, poll_s=0.3, timeout_s=300)
    assert "has changed since the job was made" in failed.error, failed
    tiny_store.catalog.reload()
    assert "tiny-pinned" not in tiny_store.catalog
