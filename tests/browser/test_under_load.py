"""Four browser sessions generating at once on the same cached model: each gets exactly the
output it would get alone, and the server keeps running."""
from workbench.testing.browser import new_page, open_generate_sampling, wait_idle

from workbench.views.generation import visible
from workbench.runtime.loading import load_model
from workbench.store import Store

PROMPTS = ["Once upon a time", "The capital of France is", "日本語 🙂 and", "Attention is"]


def expected_tokens(home, model_id: str, prompt: str) -> list[str]:
    model = load_model(model_id, store=Store(home), device="cpu")
    result = model.generate(prompt, max_new_tokens=48, do_sample=True, temperature=0.7, top_k=50,
                            top_p=0.95, seed=0)
    return [visible(t.token) for t in result.tokens]


def test_four_sessions_at_once_match_solo_runs(app_url, browser, browser_home):
    pages = [new_page(browser, 1200, 900) for _ in PROMPTS]
    try:
        for pg, prompt in zip(pages, PROMPTS):
            open_generate_sampling(pg, app_url)
            pg.get_by_label("Prompt").fill(prompt)
        for pg in pages:  # fire all four before waiting on any
            pg.get_by_role("button", name="Generate", exact=True).click()
        for pg in pages:
            wait_idle(pg, timeout=180_000)
            pg.locator(".wb-tokens").first.wait_for()
        pages[0].screenshot(path="/tmp/under_load.png")
        for pg, prompt in zip(pages, PROMPTS):
            caption = pg.get_by_text(" on cpu · ").first.inner_text()  # "<model id> · torch on cpu · ..."
            model_id = caption.split(" · ")[0].strip()
            got = pg.locator(".wb-tokens .wb-tok").all_inner_texts()
            assert got == expected_tokens(browser_home, model_id, prompt), prompt
            assert pg.external_requests == []
    finally:
        for pg in pages:
            pg.context.close()
