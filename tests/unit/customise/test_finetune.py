"""Fine-tuning jobs on the tiny models: a few seconds of training lowers the held-out loss and
finishes into a new store model; bad input and faults (unknown base, existing id, two jobs,
stop twice, SIGKILL mid-training, resume) each end cleanly with a message that says what to do."""
import os
import signal
import time

import pytest

from workbench.errors import InvalidInputError, JobError, UnknownModelError
from workbench.finetune import (
    FinetuneConfig,
    events,
    resume_job,
    start_job,
    status,
    stop_job,
    wait,
)
from workbench.finetune.blocks import pack, token_stream
from workbench.finetune.jobs import complete_checkpoints, finish_job, job_dir
from workbench.runtime import load_model
from workbench.testing import tiny_models

FAST = dict(seq_length=32, batch_size=4, eval_every=5, eval_tokens=96, ppl_window=32, ppl_tokens=256,  # noqa: C408
            learning_rate=5e-3, warmup_steps=1, new_tokens=6, prompts=("Once upon", "The quick"))


@pytest.fixture
def text_file(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:90]))
    return f


def wait_for(store, job_id, predicate, timeout=240):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        found = events(store, job_id)
        if predicate(found):
            return found
        if not status(store, job_id).active:
            raise AssertionError(f"job ended early: {status(store, job_id)}")
        time.sleep(0.3)
    raise AssertionError("timed out")


def watch(store, job_id, poll_s=0.02, timeout_s=300):
    """Poll the job's status as fast as a page could until it is no longer active; returns the
    final status and every status seen, in order (repeats collapsed)."""
    seen = []
    final = wait(store, job_id, poll_s=poll_s, timeout_s=timeout_s,
                 on_update=lambda now, _: seen.append(now.status) if not seen or seen[-1] != now.status else None)
    return final, seen


def test_training_lowers_the_loss_and_finishes_into_a_new_model(tiny_store, text_file):
    job = start_job(tiny_store, FinetuneConfig("tiny-llama", str(text_file), "tiny-tuned", max_steps=15, **FAST))
    final, seen = watch(tiny_store, job)
    # training hands over to finishing without a "trained" moment in between (a poller that read
    # "trained" there took the job for done before its model existed)
    assert seen[-1] == "finished" and "trained" not in seen and "failed" not in seen, seen
    assert final.status == "finished" and final.model_id == "tiny-tuned", final
    log = events(tiny_store, job)
    evals = [e["eval_loss"] for e in log if e["event"] == "eval"]
    steps = [e for e in log if e["event"] == "step"]
    assert evals[-1] < evals[0] - 0.05  # measurably lower held-out loss
    assert [s["step"] for s in steps] == list(range(1, 16))
    assert all(s["tokens_per_s"] > 0 and s["eta_s"] >= 0 for s in steps) and steps[-1]["eta_s"] == 0
    tiny_store.catalog.reload()  # the worker process added it
    card = tiny_store.card("tiny-tuned")
    ft = card.extra["finetune"]
    assert ft["base"] == "tiny-llama" and ft["dataset"] == "file:corpus.txt" and len(ft["dataset_sha256"]) == 64
    assert ft["perplexity_after"] < ft["perplexity_before"] and ft["steps"] == 15 and ft["date"]
    assert ft["hyperparameters"]["rank"] == 16 and ft["loss"]["steps"] == list(range(1, 16))
    assert card.can("chat") and card.custom
    tuned = load_model("tiny-tuned", store=tiny_store)  # works like any store model
    assert tuned.generate("Once upon", max_new_tokens=4).text
    # removing it removes only it
    tiny_store.forget("tiny-tuned")
    assert "tiny-tuned" not in tiny_store.catalog and tiny_store.is_installed("tiny-llama")
    assert not (tiny_store.models_dir / "tiny-tuned").exists()


def test_bad_requests_are_refused_before_anything_is_written(tiny_store, text_file):
    with pytest.raises(UnknownModelError, match="tiny-llama"):
        start_job(tiny_store, FinetuneConfig("no-such-model", str(text_file), "x"))
    with pytest.raises(JobError, match="already in the store"):
        start_job(tiny_store, FinetuneConfig("tiny-llama", str(text_file), "tiny-gpt2"))
    with pytest.raises(InvalidInputError, match="learning_rate"):
        FinetuneConfig("tiny-llama", str(text_file), "x", learning_rate=5)
    assert not tiny_store.jobs_dir.exists() or not list(tiny_store.jobs_dir.iterdir())


def test_a_bad_dataset_fails_the_job_with_the_fix(tiny_store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{oops\n')
    job = start_job(tiny_store, FinetuneConfig("tiny-llama", str(bad), "x", max_steps=2, **FAST))
    final = wait(tiny_store, job, poll_s=0.3, timeout_s=120)
    assert final.status == "failed" and "line 2: not JSON" in final.error
    assert "x" not in tiny_store.catalog


def test_text_longer_than_the_sequence_is_packed_not_cut():
    tok = tiny_models.build_tokenizer()
    long = " ".join(tiny_models.CORPUS[:5])
    ids = token_stream(tok, [long, "short"])
    blocks = pack(ids, 16)
    assert blocks.shape == (len(ids) // 16, 16)
    assert blocks.flatten().tolist() == ids[: blocks.numel()]  # every token, in order, across blocks


def test_kill_stop_twice_resume_and_finish(tiny_store, text_file):
    config = FinetuneConfig("tiny-llama", str(text_file), "tiny-resumed", max_steps=400, **FAST)
    job = start_job(tiny_store, config)
    with pytest.raises(JobError, match="one fine-tuning job at a time.*workbench jobs stop"):
        start_job(tiny_store, FinetuneConfig("tiny-llama", str(text_file), "other", max_steps=5, **FAST))
    wait_for(tiny_store, job, lambda ev: any(e["event"] == "saved" and e["step"] >= 5 for e in ev))
    os.kill(status(tiny_store, job).pid, signal.SIGKILL)
    time.sleep(0.5)
    killed = status(tiny_store, job)
    assert killed.status == "stopped" and killed.saved_step >= 5 and "died" in killed.note
    assert "tiny-resumed" not in tiny_store.catalog  # nothing half-written in the store
    assert "stopped" in stop_job(tiny_store, job) and "nothing to stop" in stop_job(tiny_store, job)

    assert f"from step {killed.saved_step}" in resume_job(tiny_store, job)
    wait_for(tiny_store, job, lambda ev: any(e["event"] == "step" and e["step"] > killed.saved_step + 1 for e in ev))
    first = stop_job(tiny_store, job)
    second = stop_job(tiny_store, job)
    assert "Stopping" in first and "already asked" in second
    stopped = wait(tiny_store, job, poll_s=0.3, timeout_s=120)
    assert stopped.status == "stopped" and stopped.saved_step == stopped.step > killed.saved_step
    assert not (job_dir(tiny_store, job) / "stop").exists()
    resumed_steps = [e["step"] for e in events(tiny_store, job) if e["event"] == "step"]
    assert killed.saved_step + 1 in resumed_steps  # continued from the saved step, not from 0
    assert complete_checkpoints(job_dir(tiny_store, job))[-1][0] == stopped.step

    finish_job(tiny_store, job)
    done = wait(tiny_store, job, poll_s=0.3, timeout_s=180)
    tiny_store.catalog.reload()
    assert done.status == "finished" and tiny_store.card("tiny-resumed").extra["finetune"]["steps"] == stopped.step


def test_disk_full_while_saving_adds_nothing(tiny_store, text_file, monkeypatch):
    import errno

    import transformers

    from workbench.data.loading import load_dataset
    from workbench.errors import DiskSpaceError
    from workbench.finetune.finish import finish

    config = FinetuneConfig("tiny-llama", str(text_file), "tiny-full", max_steps=3, auto_finish=False, **FAST)
    job = start_job(tiny_store, config)
    assert wait(tiny_store, job, poll_s=0.3, timeout_s=180).status == "trained"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", full)
    model = load_model("tiny-llama", store=tiny_store)
    with pytest.raises(DiskSpaceError, match="nothing was added to the store"):
        finish(tiny_store, job_dir(tiny_store, job), config, model, load_dataset(tiny_store, str(text_file)))
    folder = job_dir(tiny_store, job)
    assert not (folder / "merged").exists() and not (folder / "merged.partial").exists()
    tiny_store.catalog.reload()
    assert "tiny-full" not in tiny_store.catalog and status(tiny_store, job).status == "trained"


def test_training_threads_leave_busy_cpus_alone():
    from workbench.finetune.worker import training_threads

    assert training_threads(3, cpus=2, load1=9.0) == 3  # asked for: kept
    assert training_threads(0, cpus=2, load1=0.1) == 2  # idle machine: every CPU
    assert training_threads(0, cpus=2, load1=1.2) == 1  # one CPU busy with other work
    assert training_threads(0, cpus=2, load1=6.0) == 1  # never fewer than one
    assert training_threads(0, cpus=16, load1=3.4) == 13
