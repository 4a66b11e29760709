"""Customise page through streamlit.testing: a finished fine-tune's "Make an app from it" opens the
Apps page's form filled in with the tuned model as the base; saving it makes an app on that model,
and the page shows the saved app with its test chat, which answers with the tuned model."""
import pytest

from workbench.apps.catalog import get_card
from workbench.finetune import FinetuneConfig, start_job, wait
from workbench.testing import tiny_models

FAST = dict(seq_length=32, batch_size=4, eval_every=2, eval_tokens=96, ppl_window=32, ppl_tokens=256,  # noqa: C408
            learning_rate=5e-3, warmup_steps=1, new_tokens=4, prompts=("Once upon",))


@pytest.fixture
def tuned(tiny_store, tmp_path) -> str:
    """A fine-tune of tiny-llama (three steps) that finished into the store model ``tiny-notes``."""
    text = tmp_path / "notes.txt"
    text.write_text("\n".join(tiny_models.CORPUS[:90]))
    job = start_job(tiny_store, FinetuneConfig("tiny-llama", str(text), "tiny-notes", max_steps=3, **FAST))
    done = wait(tiny_store, job, poll_s=0.3, timeout_s=300)
    assert done.status == "finished" and done.model_id == "tiny-notes", done
    tiny_store.catalog.reload()  # the job's worker process added the model
    return done.model_id


def test_make_an_app_from_a_finished_fine_tune(open_page, tiny_store, tuned):
    at = open_page("pages/customise.py")
    assert any(f"Added **{tuned}**" in s.value for s in at.success)
    at.button(key="ft_make_app").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # the Apps page, its form filled in: the tuned model is the base
    assert at.session_state["apps_view"] == "Create / edit"
    assert at.text_input(key="apps_f_id").value == "tiny-notes-app"
    assert at.text_input(key="apps_f_name").value == "tiny-notes app"
    assert at.selectbox(key="apps_f_base_model").value == tuned
    at.switch_page("pages/apps.py")  # AppTest reruns the page it was told, not the one switched to
    at.text_area(key="apps_f_instructions").set_value("Answer in one line.")
    at.number_input(key="apps_f_max_new_tokens").set_value(3).run()
    at.button(key="apps_f_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    card = get_card(tiny_store, "tiny-notes-app")
    assert card.base_model == tuned and card.instructions == "Answer in one line."
    # pointed to it: said so, and its test chat is under the form
    assert any(s.value.startswith("Saved tiny-notes-app") for s in at.success)
    assert any("Try tiny\\-notes\\-app" in m.value for m in at.markdown), [m.value for m in at.markdown]
    at.chat_input(key="apps_try_input").set_value("Once upon").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    answer = at.session_state["apps_chats"]["tiny-notes-app"][-1]["answer"]
    assert answer.app == "tiny-notes-app" and answer.model == tuned and answer.completion_tokens >= 1
