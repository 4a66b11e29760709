"""Attention page in headless Chromium against `streamlit run app.py`, network blocked.

Proves what AppTest cannot: bertviz's views draw with only the inlined JavaScript (no CDN), the
token labels appear inside the iframe, plotly heatmaps draw, and token text runs no script."""
import time

from workbench.testing.browser import shot, wait_idle

PAYLOAD = "</script><script>alert(1)</script><script>document.documentElement.dataset.pwned='1'</script>"


def open_attention(page, app_url, text):
    page.goto(app_url + "/attention")
    wait_idle(page)
    page.get_by_role("heading", name="Attention").wait_for()
    page.locator(".stTextArea textarea").first.fill(text)
    page.keyboard.press("Control+Enter")
    wait_idle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="Show attention").click()
    wait_idle(page)
    page.locator(".st-key-att_grid .js-plotly-plot").first.wait_for()
    return time.perf_counter() - start


def test_views_draw_offline_with_token_labels(app_url, page):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    seconds = open_attention(page, app_url, "The capital of France is Paris. " + PAYLOAD)
    print(f"click to grid drawn: {seconds:.2f} s")
    grid = page.locator(".st-key-att_grid")
    assert grid.locator(".heatmaplayer image, .heatmaplayer").count() > 0
    grid.locator(".nsewdrag").first.scroll_into_view_if_needed()  # the teaching note sits above the grid
    box = grid.locator(".nsewdrag").first.bounding_box()  # the first cell: layer 0, head 0
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    hover = grid.locator(".hoverlayer .hovertext").first
    hover.wait_for()
    text = hover.text_content()
    assert "query" in text and "key" in text and "weight" in text
    shot(page.locator('[data-testid="stMain"]'), "attention-page")
    shot(grid, "attention-grid")
    page.locator(".st-key-att_zoom .js-plotly-plot").first.wait_for()
    shot(page.locator(".st-key-att_zoom"), "attention-zoom")

    page.get_by_role("tab", name="Head view").click()
    frame = page.frame_locator(".st-key-att_head_view iframe")
    frame.locator("svg text", has_text="Paris").first.wait_for()
    labels = frame.locator("svg text").evaluate_all("els => els.map(e => e.textContent)")
    assert "␣Paris" in labels and "␣capital" in labels
    assert any("</" in t for t in labels)  # the tag's pieces are drawn as text
    tokens = int(page.locator(".st-key-att_summary_line").inner_text().split(": ")[1].split(" tokens")[0])
    assert len(labels) >= 2 * tokens  # every token, left and right column
    frame.locator("#layer option").first.wait_for(state="attached")
    assert frame.locator("#layer option").count() == 2
    assert frame.locator("html[data-pwned]").count() == 0
    # hovering a token shows only its lines (bertviz's d3 v5 handlers work offline)
    frame.locator("#left text", has_text="Paris").first.hover()
    frame.locator("line[visibility='visible']").first.wait_for(state="attached")
    assert frame.locator("#attention[visibility='hidden']").count() == 1
    shot(page.locator(".st-key-att_head_view"), "attention-head-view")
    frame.locator("#layer").select_option("1")  # another layer redraws
    frame.locator("#attention").wait_for(state="attached")
    assert frame.locator("#layer").input_value() == "1"

    page.get_by_role("tab", name="Model view").click()
    mframe = page.frame_locator(".st-key-att_model_view iframe")
    mframe.locator("svg text", has_text="Heads").first.wait_for()
    assert mframe.locator("html[data-pwned]").count() == 0
    shot(page.locator(".st-key-att_model_view"), "attention-model-view")

    page.get_by_role("tab", name="Summaries").click()
    page.locator(".st-key-att_rollout .js-plotly-plot").first.wait_for()
    page.locator(".st-key-att_stats .js-plotly-plot").first.wait_for()
    shot(page.locator(".st-key-att_rollout"), "attention-rollout")
    shot(page.locator(".st-key-att_stats"), "attention-head-stats")
    assert dialogs == []


def test_generation_and_ablation_in_the_browser(app_url, page):
    open_attention(page, app_url, "Once upon a time")
    page.get_by_role("tab", name="While generating").click()
    page.get_by_role("button", name="Generate from the text").click()
    wait_idle(page)
    page.locator(".st-key-att_gen_view .js-plotly-plot").first.wait_for()
    assert "Step 1/" in page.locator(".st-key-att_gen_view").inner_text()
    shot(page.locator(".st-key-att_gen_view"), "attention-generation")

    page.get_by_role("tab", name="Switch heads off").click()
    box = page.locator(".st-key-att_ab_heads")
    box.click()
    page.get_by_role("option", name="0.1", exact=True).click()
    page.keyboard.press("Escape")
    wait_idle(page)
    page.get_by_role("button", name="Compare next token").click()
    wait_idle(page)
    page.locator(".st-key-att_ab_result .js-plotly-plot").first.wait_for()
    shot(page.locator(".st-key-att_ab_result"), "attention-ablation")
