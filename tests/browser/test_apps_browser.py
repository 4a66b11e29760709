"""The Apps page in headless Chromium: create an app with a knowledge file, chat, open a
citation, export the .gptapp, remove the app, import the file and chat again (tiny-llama)."""
from playwright.sync_api import expect

from workbench.testing.browser import shot, wait_idle

HANDBOOK = "# Club\n\n## Hours\nOpens at 5:45.\n"


def ask(page, placeholder: str, text: str) -> None:
    """Send ``text`` once and wait for the question to show, then for the answer's sources."""
    wait_idle(page)
    box = page.get_by_placeholder(placeholder)
    box.fill(text)
    box.press("Enter")
    page.locator('[data-testid="stChatMessage"]').filter(has_text=text).last.wait_for(timeout=20_000)
    wait_idle(page)
    page.get_by_text("Sources").last.wait_for(timeout=120_000)


def open_citation(page) -> None:
    """Open the answer's first citation: the passage shows as it is in the file (its heading path in the label)."""
    cite = page.locator('[data-testid="stExpander"]').filter(has_text="[1] hours.md › Club > Hours").last
    cite.get_by_text("[1] hours.md").click()
    passage = cite.locator('[data-testid="stText"]')
    passage.wait_for(timeout=10_000)
    assert passage.inner_text().strip() == "Opens at 5:45."  # the sentence; its heading is in the label


def test_create_chat_cite_export_remove_import_chat(app_url, page, tmp_path):
    knowledge = tmp_path / "hours.md"
    knowledge.write_text(HANDBOOK)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(app_url + "/apps")
    wait_idle(page)
    page.get_by_role("heading", name="Apps").wait_for()
    shot(page.locator('[data-testid="stMain"]'), "apps-front")
    page.get_by_role("button", name="New app").click()
    wait_idle(page)
    page.get_by_label("Id", exact=True).fill("club")
    page.get_by_label("Name", exact=True).fill("Club <b>helper</b>")
    page.get_by_label("Base model").click()
    page.get_by_role("option", name="Tiny llama (tiny-llama)").click()
    wait_idle(page)
    page.get_by_label("Instructions (the system prompt)").fill("<script>alert(1)</script>")
    page.get_by_text("Generation settings").click()
    page.get_by_label("Max new tokens").fill("4")
    page.keyboard.press("Tab")
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(knowledge))
    wait_idle(page)
    page.get_by_role("button", name="Save the app").click()
    wait_idle(page)
    page.get_by_text("Saved club with 1 knowledge file(s), indexed.").wait_for(timeout=30_000)
    ask(page, "Test it", "When does it open?")
    open_citation(page)
    shot(page, "apps-create-try")

    page.get_by_role("radio", name="Store front").click()
    wait_idle(page)
    card = page.locator(".st-key-apps_card_club")
    card.get_by_text("Club <b>helper</b>").wait_for()  # the name as typed, not as HTML
    card.get_by_role("button", name="Export").click()
    wait_idle(page)
    with page.expect_download() as download:
        page.locator(".st-key-apps_card_club").get_by_role("button", name="Download .gptapp").click()
    package = tmp_path / "club.gptapp"
    download.value.save_as(package)
    shot(page.locator(".st-key-apps_card_club"), "apps-export")
    page.locator(".st-key-apps_card_club").get_by_role("button", name="Remove").click()
    wait_idle(page)
    page.get_by_text("Removed club.").wait_for()
    expect(page.locator(".st-key-apps_card_club")).to_have_count(0)  # gone once the run has drawn the list

    page.get_by_role("radio", name="Import").click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(package))
    wait_idle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    wait_idle(page)
    page.get_by_text("Imported club: checked every file against its manifest.").wait_for(timeout=30_000)
    # the run the click started shows the imported app's chat: nothing opened by hand
    page.get_by_placeholder("Ask Club <b>helper</b>").wait_for(timeout=20_000)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    ask(page, "Ask Club <b>helper</b>", "When does it open?")
    open_citation(page)
    shot(page, "apps-chat-after-import")
    assert dialogs == []
