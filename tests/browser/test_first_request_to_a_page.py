"""A fresh server whose first request is a page URL (a bookmark) still shows the app's menu."""
import pytest

from workbench.testing.browser import start_app, stop_app, wait_idle


@pytest.mark.parametrize("path, heading", [("store", "Model store"), ("api", "API")])
def test_bookmarked_page_on_a_fresh_server_gets_the_app_menu(browser_home, browser, path, heading):
    from workbench.testing.browser import new_page

    proc, url = start_app(browser_home)
    try:
        pg = new_page(browser)
        pg.goto(f"{url}/{path}")
        wait_idle(pg)
        pg.get_by_role("heading", name=heading, exact=True).wait_for()
        wait_idle(pg)  # the hand-over to app.py takes more than one run
        pg.locator(".st-key-wb_menu").get_by_text("Latency").wait_for()
        nav = pg.locator('.st-key-wb_menu').inner_text()
        assert "Generate" in nav and "Latency" in nav
        assert "shared" not in nav and "app" not in nav.split()
        # Streamlit's own file-name menu never appears (it is off in .streamlit/config.toml)
        assert pg.locator('[data-testid="stSidebarNav"]').count() == 0
        assert pg.url.rstrip("/").endswith(f"/{path}")
        assert pg.external_requests == []
        pg.context.close()
    finally:
        stop_app(proc)


def test_first_paint_of_a_fresh_server_never_shows_file_names(browser_home, browser):
    """Poll the sidebar from the first paint on: only the app's own menu is ever drawn."""
    from workbench.testing.browser import new_page

    proc, url = start_app(browser_home)
    try:
        pg = new_page(browser)
        pg.goto(url)
        seen = set()
        for _ in range(60):  # about 6 s, longer than the app's first run
            text = pg.locator('[data-testid="stSidebar"]').all_inner_texts()
            seen.update(" ".join(text).split())
            if pg.locator(".st-key-wb_menu").count():
                break
            pg.wait_for_timeout(100)
        wait_idle(pg)
        assert "Latency" in pg.locator(".st-key-wb_menu").inner_text()
        assert not {"app", "shared", "_shared", "generate", "latency", "store", "attention"} & seen
        pg.context.close()
    finally:
        stop_app(proc)
