"""Customise page through streamlit.testing: start a job, re-attach after a reload, stop, finish
into a new model, the before/after table; refusals shown as errors while the page keeps running."""
import time

import pytest

from workbench.data.install import add_dataset
from workbench.finetune import events, list_jobs, status, wait
from workbench.store.catalog import ID_PATTERN
from workbench.testing import tiny_models


@pytest.fixture
def page(open_page, tiny_store, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:90]))
    add_dataset(tiny_store, "notes", f)
    at = open_page("pages/customise.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    at.selectbox(key="ft_dataset").set_value("notes").run()
    at.number_input(key="ft_seq").set_value(32)
    at.number_input(key="ft_batch").set_value(2)
    at.number_input(key="ft_steps").set_value(300)
    at.text_input(key="ft_out").set_value("tiny-notes").run()
    return at


def test_start_reload_stop_finish(page, tiny_store, open_page):
    assert any("No fine-tuning job yet" in i.value for i in page.info)
    page.button(key="ft_start").click().run()
    assert not page.exception and not page.error, [e.value for e in page.error]
    (job,) = list_jobs(tiny_store)
    start = time.monotonic()
    while not any(e.get("event") == "step" and e["step"] >= 2 for e in events(tiny_store, job.job_id)):
        assert time.monotonic() - start < 240 and status(tiny_store, job.job_id).active
        time.sleep(0.5)
    reloaded = open_page("pages/customise.py")  # a new session: nothing in session state
    assert reloaded.selectbox(key="wb_job").value == job.job_id
    assert any("status **running**" in m.value for m in reloaded.markdown)
    assert len(reloaded.get("plotly_chart")) == 1
    reloaded.button(key="ft_stop").click().run()
    assert any("Stopping" in i.value for i in reloaded.info)
    stopped = wait(tiny_store, job.job_id, poll_s=0.5, timeout_s=180)
    assert stopped.status == "stopped" and stopped.saved_step >= 2
    reloaded.run()
    assert not reloaded.button(key="ft_resume").disabled and reloaded.button(key="ft_stop").disabled
    reloaded.button(key="ft_finish").click().run()
    done = wait(tiny_store, job.job_id, poll_s=0.5, timeout_s=240)
    assert done.status == "finished", done
    reloaded.run()
    assert not reloaded.exception
    assert any("Added **tiny-notes**" in s.value for s in reloaded.success)
    labels = {m.label for m in reloaded.metric}
    assert {"held-out perplexity, base", "held-out perplexity, tuned"} <= labels
    table = reloaded.dataframe[-1].value
    assert list(table.columns) == ["prompt", "base", "tuned"] and len(table) == 3


def test_refusals_are_shown_and_the_page_keeps_running(page, tiny_store):
    page.text_input(key="ft_out").set_value("tiny-gpt2").run()
    assert not page.exception
    assert any("already in the store" in e.value for e in page.error)
    assert page.button(key="ft_start").disabled  # shown as typed, before anything can start
    assert list_jobs(tiny_store) == []


def test_an_upload_proposes_a_valid_id(open_page, tiny_store):
    at = open_page("pages/customise.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    at.radio(key="ft_source").set_value("Your file").run()
    text = "\n".join(tiny_models.CORPUS[:40]).encode()
    at.file_uploader(key="ft_upload").set_value(("my notes.txt", text, "text/plain")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.text_input(key="ft_out").value == "tiny-llama-my-notes"
    assert ID_PATTERN.fullmatch(at.text_input(key="ft_out").value)
    assert not at.button(key="ft_start").disabled


def test_an_invalid_typed_id_is_shown_before_anything_starts(page, tiny_store):
    page.text_input(key="ft_out").set_value("My Notes!").run()
    assert not page.exception
    assert any("not a valid id" in e.value and "e.g. 'my-notes'" in e.value for e in page.error)
    assert page.button(key="ft_start").disabled
    page.text_input(key="ft_out").set_value("my-notes").run()  # the fix the message gives
    assert not page.error and not page.button(key="ft_start").disabled
    assert list_jobs(tiny_store) == []


def test_latency_page_measures_perplexity_per_backend(open_page, tiny_store, tmp_path):
    from workbench.quality.results import measured_quality

    f = tmp_path / "notes.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:60]))
    add_dataset(tiny_store, "notes", f)
    at = open_page("pages/latency.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    at.multiselect(key="lat_backends").set_value(["torch"]).run()
    at.selectbox(key="lat_ppl_dataset").set_value("notes").run()
    at.button(key="lat_ppl_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = measured_quality(tiny_store, "tiny-llama", "notes")
    assert set(stored) == {"torch"} and stored["torch"]["perplexity"] > 1
    table = at.dataframe[0].value
    assert table["backend"].tolist() == ["torch"] and table["perplexity"].iloc[0] == stored["torch"]["perplexity"]


def test_store_page_lists_and_removes_datasets(open_page, tiny_store, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:30]))
    add_dataset(tiny_store, "notes", f)
    at = open_page("pages/store.py")
    assert any("Shakespeare" in m.value for m in at.markdown)
    assert at.button(key="install_data_shakespeare").label == "Install"
    at.button(key="remove_data_notes").click().run()
    assert not at.exception
    assert at.button(key="install_data_notes").label == "Install"
