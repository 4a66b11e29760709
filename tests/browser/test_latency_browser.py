"""Latency page in headless Chromium against `streamlit run app.py`, network blocked.

Proves what AppTest cannot: the export progress and the plotly charts draw in a real browser
with no CDN, and the HTML report downloads as a standalone file."""
import shutil

from workbench.testing.browser import shot, wait_idle


def test_export_check_and_time_draws_charts_offline(app_url, page, browser_home):
    # other browser tests may have exported already: start from an empty export cache
    shutil.rmtree(browser_home / "exports", ignore_errors=True)
    (browser_home / "exports").mkdir()
    page.goto(app_url)  # as a user does: open the app, pick the page in the menu
    wait_idle(page)
    page.locator('.st-key-wb_menu').get_by_text("Latency").click()
    wait_idle(page)
    page.get_by_role("heading", name="Latency").wait_for()
    settings = page.locator(".st-key-latency_settings")
    # the default backends: torch, and ONNX Runtime on the fp32 and the fused graph
    assert settings.get_by_text("First run exports onnxruntime, onnxruntime-fused").is_visible()
    shot(settings, "latency-settings")
    page.get_by_role("button", name="Export, check and time").click()
    page.get_by_text("Timing Tiny").first.wait_for()  # the live status box with the progress bar
    page.locator('[data-testid="stProgress"]').first.wait_for()
    shot(page.locator('[data-testid="stMain"]'), "latency-exporting")
    wait_idle(page, timeout=300_000)
    parity = page.locator(".st-key-latency_parity")
    parity.get_by_text("PASS (fp32)").wait_for()
    parity.get_by_text("PASS (fused)").wait_for()
    charts = page.locator(".st-key-latency_charts .js-plotly-plot")
    charts.nth(2).wait_for()
    assert charts.count() == 3
    # every chart drew its bars or lines (plotly renders them as SVG paths)
    charts.nth(0).locator(".scatterlayer .trace path.js-line").first.wait_for()
    assert charts.nth(0).locator(".scatterlayer .trace path.js-line").count() == 3
    for i in (1, 2):
        charts.nth(i).locator(".barlayer .point path").first.wait_for()
        assert charts.nth(i).locator(".barlayer .point path").count() == 3
    legend = charts.nth(0).locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)")
    assert legend == ["torch", "onnxruntime", "onnxruntime-fused"]
    metrics = page.locator(".st-key-latency_metrics [data-testid='stMetric']")
    assert metrics.count() == 3 and " ms" in metrics.nth(2).inner_text()
    assert not settings.get_by_text("First run exports").is_visible()  # cached now
    shot(page.locator('[data-testid="stMain"]'), "latency-page")
    shot(page, "latency-window")
    assert "Generate" in page.locator('.st-key-wb_menu').inner_text()
    shot(page.locator(".st-key-latency_charts"), "latency-charts")
    shot(parity, "latency-parity")

    with page.expect_download() as info:
        page.get_by_role("button", name="HTML report").click()
    report = info.value.path().read_text(encoding="utf-8")
    assert report.startswith("<!doctype html>") and "PASS (fp32)" in report
    assert 'src="http' not in report  # plotly.js is inside the file
