"""Store and Generate in headless Chromium against `streamlit run app.py`, network blocked."""
from workbench.testing.browser import shot, wait_idle


def test_generate_streams_and_colours_tokens(app_url, page):
    page.goto(app_url)
    wait_idle(page)
    page.get_by_role("heading", name="Generate").wait_for()
    prompt = page.get_by_label("Prompt")
    prompt.fill("Once upon a time")
    page.get_by_role("button", name="Generate", exact=True).click()
    wait_idle(page)
    page.locator(".wb-tokens .wb-tok").first.wait_for()
    assert page.locator(".wb-tokens .wb-tok").count() > 0
    assert page.get_by_text("Time to first token").is_visible()
    shot(page.locator('[data-testid="stMain"]'), "generate")


def test_script_in_prompt_is_text(app_url, page):
    page.goto(app_url)
    wait_idle(page)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.get_by_label("Prompt").fill("</script><script>alert(1)</script><b>bold</b>")
    page.get_by_role("button", name="Generate", exact=True).click()
    wait_idle(page)
    page.locator(".wb-tokens").first.wait_for()
    assert dialogs == []


def test_store_page_remove_and_add_again(app_url, page, tiny_model_dirs):
    page.goto(app_url + "/store")
    wait_idle(page)
    page.get_by_role("heading", name="Model store").wait_for()
    card = page.locator(".st-key-card_tiny-gemma3")
    card.get_by_role("button", name="Remove").click()
    wait_idle(page)
    page.locator(".st-key-card_tiny-gemma3").wait_for(state="detached")  # a user's model leaves with its card
    page.locator(".st-key-add_id input").fill("tiny-gemma3")
    page.locator(".st-key-add_location input").fill(str(tiny_model_dirs["gemma3"]))
    page.get_by_role("button", name="Add and install").click()
    wait_idle(page, 120_000)
    page.locator(".st-key-card_tiny-gemma3").get_by_text("installed").first.wait_for()
    shot(page.locator('[data-testid="stMain"]'), "store")


def pick_model(page, name: str) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_label("Model", exact=True).click()
    page.get_by_role("option", name=name).click()
    wait_idle(page)


def test_chat_then_side_by_side_then_switch_model(app_url, page):
    page.goto(app_url)
    wait_idle(page)
    pick_model(page, "Tiny llama")
    page.get_by_role("radio", name="Chat").click()
    wait_idle(page)
    page.get_by_placeholder("Message the model").fill("日本語 🙂 hello")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_text("Time to first token").wait_for()
    assert page.get_by_text("日本語 🙂 hello").count() >= 1  # the user's message, shown as typed
    shot(page, "generate-chat")

    page.get_by_role("radio", name="Side by side").click()
    wait_idle(page)
    page.get_by_role("button", name="Generate with both").click()
    wait_idle(page)
    assert page.get_by_text("Time to first token").count() == 2
    shot(page, "generate-side-by-side")

    pick_model(page, "Tiny gpt2")
    page.get_by_role("radio", name="Prompt").click()
    wait_idle(page)
    page.get_by_role("button", name="Generate", exact=True).click()
    wait_idle(page)
    assert page.get_by_text("tiny-gpt2 · torch on cpu").count() == 1
