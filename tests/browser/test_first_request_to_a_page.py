"""A fresh server whose first request is a page URL (a bookmark) still shows the app's menu."""
from workbench.testing.browser import start_app, stop_app, wait_idle


def test_bookmarked_page_on_a_fresh_server_gets_the_app_menu(browser_home, browser):
    from workbench.testing.browser import new_page

    proc, url = start_app(browser_home)
    try:
        pg = new_page(browser)
        pg.goto(url + "/store")
        wait_idle(pg)
        pg.get_by_role("heading", name="Model store").wait_for()
        nav = pg.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Generate" in nav and "Latency" in nav
        assert "shared" not in nav and "app" not in nav.split()
        assert pg.external_requests == []
        pg.context.close()
    finally:
        stop_app(proc)
