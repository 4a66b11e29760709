"""Customise in headless Chromium against `streamlit run app.py`, network blocked: upload a file,
start a LoRA job on the tiny Llama, reload the page mid-training and see the loss curve go on
(the page re-attaches to the running worker), Stop, Resume, let it finish into a new store
model, then generate with that model on the Generate page.

The app gets a store of its own (the new model must not show up in the other browser tests'
pickers). The job runs on one thread (the page's "Training threads"): the tiny model's steps are
then ~0.1 s whatever else this machine runs, and the whole test stays near a minute."""
from __future__ import annotations

import time

import pytest

from workbench.finetune import jobs
from workbench.store import Store
from workbench.testing import tiny_models
from workbench.testing.browser import shot, start_app, stop_app, wait_idle
from workbench.testing.stores import make_tiny_store

pytestmark = pytest.mark.browser

STEPS = 300
NEW_ID = "tiny-corpus-tuned"


@pytest.fixture(scope="module")
def customise_app(tmp_path_factory, tiny_model_dirs):
    home = tmp_path_factory.mktemp("customise-home")
    make_tiny_store(home, tiny_model_dirs)
    corpus = tmp_path_factory.mktemp("customise-data") / "corpus.txt"
    corpus.write_text("\n".join(tiny_models.CORPUS[:90]), encoding="utf-8")
    proc, url = start_app(home)
    yield url, Store(home), corpus
    for job in jobs.list_jobs(Store(home)):  # never leave a worker behind
        if job.active:
            jobs.stop_job(Store(home), job.job_id)
            jobs.wait(Store(home), job.job_id, poll_s=0.5, timeout_s=60)
    stop_app(proc)


def loss_points(page) -> tuple[int, int]:
    """(train, eval) points drawn in the job's loss chart, read from plotly's own data ((0, 0)
    while the chart is not drawn yet)."""
    chart = page.locator(".st-key-ft_job .js-plotly-plot")
    if not chart.count():
        return 0, 0
    return tuple(chart.first.evaluate("el => el.data ? [el.data[0].x.length, el.data[1].x.length] : [0, 0]"))


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.25):
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        value = predicate()
        if value:
            print(f"{time.strftime('%H:%M:%S')} {what}: {time.monotonic() - start:.1f} s")
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def job_text(page) -> str:
    return page.locator(".st-key-ft_job").first.inner_text()


def test_start_reload_stop_resume_finish_generate(customise_app, page):
    url, store, corpus = customise_app
    started = time.monotonic()
    page.goto(url + "/customise")
    wait_idle(page)
    page.get_by_role("heading", name="Customise").wait_for()
    page.locator('[data-testid="stSidebar"]').get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="Tiny llama", exact=True).click()
    wait_idle(page)
    page.get_by_text("Your file", exact=True).click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(corpus))
    wait_idle(page)
    for label, value in (("Steps", STEPS), ("Sequence length", 32), ("Batch", 2),
                         ("Training threads (0: auto)", 1)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        wait_idle(page)
    out = page.get_by_label("New model id", exact=True)
    out.fill(NEW_ID)
    out.press("Enter")
    wait_idle(page)
    shot(page.locator('[data-testid="stMain"]'), "customise-settings")
    print(f"{time.strftime('%H:%M:%S')} settings made: {time.monotonic() - started:.1f} s")
    page.get_by_role("button", name="Start fine-tuning").click()
    wait_idle(page)
    (job,) = jobs.list_jobs(store)
    assert job.out == NEW_ID and job.max_steps == STEPS

    # training: the page's chart grows while the worker logs steps
    wait_until(lambda: loss_points(page)[0] >= 3, 90, "the first training steps on the chart")
    assert "running" in job_text(page)
    before_reload = loss_points(page)
    shot(page.locator(".st-key-ft_job"), "customise-training")

    # reload: a new session re-attaches to the running job and its curve keeps growing
    page.reload()
    wait_idle(page)
    wait_until(lambda: page.locator(".st-key-ft_job .js-plotly-plot").count(), 30, "the chart after a reload")
    assert "running" in job_text(page), job_text(page)
    after_reload = wait_until(lambda: (p := loss_points(page))[0] > before_reload[0] and p, 30,
                              "the curve to go on after the reload")
    assert after_reload[1] >= before_reload[1] >= 1  # the eval curve came back whole (step 0 at least)
    shot(page.locator(".st-key-ft_job"), "customise-reloaded")

    # stop: it saves at the end of the current step
    page.get_by_role("button", name="Stop (saves)").click()
    wait_until(lambda: "status stopped" in job_text(page), 60, "the page to show the job stopped")
    stopped = jobs.status(store, job.job_id)
    assert stopped.status == "stopped" and 0 < stopped.saved_step == stopped.step < STEPS, stopped
    # the fragment redraws element by element: the status line can be new while the buttons are not yet
    wait_until(lambda: f"saved: {stopped.saved_step}" in job_text(page), 10, "the saved step on the page")
    wait_until(lambda: page.get_by_role("button", name="Resume").is_enabled(), 10, "Resume to be enabled")
    assert page.get_by_role("button", name="Stop (saves)").is_disabled()
    shot(page.locator(".st-key-ft_job"), "customise-stopped")

    # resume: it continues from the saved step and finishes into a new store model
    page.get_by_role("button", name="Resume").click()
    wait_until(lambda: "status running" in job_text(page) or "status finish" in job_text(page), 60,
               "the page to show the job running again")
    wait_until(lambda: "status finished" in job_text(page), 150, "the job to finish")
    page.get_by_text(f"Added {NEW_ID} to the store").wait_for()
    done = jobs.status(store, job.job_id)
    assert done.status == "finished" and done.model_id == NEW_ID
    resumed = [e["step"] for e in jobs.events(store, job.job_id) if e.get("event") == "step"]
    assert stopped.saved_step + 1 in resumed and resumed[-1] == STEPS  # from the saved step, not 0
    assert loss_points(page)[0] == STEPS
    page.get_by_text("held-out perplexity, tuned").wait_for()
    table = page.locator('.st-key-ft_job [data-testid="stDataFrame"]').first  # the side-by-side generations
    table.wait_for()
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # the grid draws on a canvas after it appears
    shot(page.locator(".st-key-ft_job"), "customise-finished")
    print(f"{time.strftime('%H:%M:%S')} finished page checked: {time.monotonic() - started:.1f} s since the start")

    # the new model works like any store model: pick it on the Generate page and generate
    page.goto(url)
    wait_idle(page)
    page.get_by_role("heading", name="Generate").wait_for()
    page.locator('[data-testid="stSidebar"]').get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="Tiny llama + corpus.txt (LoRA)").click()
    wait_idle(page)
    page.get_by_label("Prompt").fill("The capital of France is")
    page.get_by_role("button", name="Generate", exact=True).click()
    wait_idle(page)
    page.locator(".wb-tokens .wb-tok").first.wait_for()
    assert page.get_by_text(f"{NEW_ID} · torch on cpu").count() == 1
    # greedy (the page's default): the tuned tiny model has learnt its corpus, the random base has not
    assert "Paris" in page.locator(".wb-tokens").first.inner_text()
    shot(page.locator('[data-testid="stMain"]'), "customise-generate-new-model")
    print(f"{time.strftime('%H:%M:%S')} generated: {time.monotonic() - started:.1f} s since the start")
