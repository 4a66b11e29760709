"""Two sessions on the same app at the same time: one explores attention while the other runs a
latency benchmark. Both finish, each gets what it would get alone, and nothing leaves the machine."""
import io
import time

import numpy as np

from workbench.testing.browser import new_page, shot, wait_idle
from workbench import attention as attn
from workbench.runtime.loading import load_model
from workbench.store import Store

TEXT = "The capital of France is Paris. 日本語 🙂 and <b>tags</b>"


def solo(home):
    """What the attention session gets alone: the weights and 12 greedy tokens with attention."""
    model = load_model("tiny-llama", store=Store(home), device="cpu", attn_implementation="eager")
    result = attn.attention(model, TEXT)
    gen_result, _ = attn.generate_with_attention(model, TEXT, max_new_tokens=12, stop_at_eos=True)
    return result, gen_result, model.tokenizer


def test_attention_while_another_session_benchmarks(app_url, browser, browser_home):
    expected, expected_gen, expected_tokenizer = solo(browser_home)
    bench, look = new_page(browser, 1300, 1000), new_page(browser, 1300, 1000)
    dialogs = []
    try:
        bench.goto(app_url)
        wait_idle(bench)
        bench.locator('.st-key-wb_menu').get_by_text("Latency").click()
        wait_idle(bench)
        look.goto(app_url + "/attention")
        wait_idle(look)
        look.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        look.locator('[data-testid="stSidebar"]').get_by_label("Model", exact=True).click()
        look.get_by_role("option", name="Tiny llama").click()
        wait_idle(look)
        look.locator(".st-key-att_text textarea").fill(TEXT)
        look.keyboard.press("Control+Enter")
        wait_idle(look)

        t0 = time.perf_counter()
        bench.get_by_role("button", name="Export, check and time").click()
        bench.get_by_text("Timing Tiny").first.wait_for()  # the benchmark is running now
        look.get_by_role("button", name="Show attention").click()
        wait_idle(look)
        look.locator(".st-key-att_grid .js-plotly-plot").first.wait_for()
        with look.expect_download() as info:
            look.get_by_role("button", name="Weights (.npz)").click()
        got = np.load(io.BytesIO(info.value.path().read_bytes()))
        look.get_by_role("tab", name="Head view", exact=True).click()
        look.frame_locator(".st-key-att_head_view iframe").locator("#left text").first.wait_for()
        look.get_by_role("tab", name="Model view", exact=True).click()
        look.frame_locator(".st-key-att_model_view iframe").locator("svg text", has_text="Heads").first.wait_for()
        look.get_by_role("tab", name="Summaries", exact=True).click()
        look.locator(".st-key-att_stats .js-plotly-plot").first.wait_for()
        look.get_by_role("tab", name="While generating", exact=True).click()
        wait_idle(look)
        look.get_by_role("button", name="Generate from the text").click()
        wait_idle(look)
        look.locator(".st-key-att_gen_view .js-plotly-plot").first.wait_for()
        generated = look.locator('[data-testid="stCode"]').first.inner_text()
        attention_done = time.perf_counter() - t0
        bench_running = bench.locator('[data-testid="stApp"][data-test-script-state="running"]').count() == 1

        wait_idle(bench, timeout=300_000)
        bench_done = time.perf_counter() - t0
        parity = bench.locator(".st-key-latency_parity")
        parity.get_by_text("PASS (fp32)").wait_for()
        bench.locator(".st-key-latency_charts .js-plotly-plot").nth(2).wait_for()
        shot(look.locator('[data-testid="stMain"]'), "under-load-attention")
        shot(bench.locator('[data-testid="stMain"]'), "under-load-latency")
        print(f"\nattention session done after {attention_done:.1f} s (benchmark still running: {bench_running}); "
              f"benchmark done after {bench_done:.1f} s")

        # the attention session got exactly what it gets alone
        assert str(got["model"]) == "tiny-llama"
        np.testing.assert_array_equal(got["weights"], expected.weights)
        assert list(got["tokens"]) == expected.tokens
        ids = list(expected_gen.prompt_ids) + list(expected_gen.token_ids)
        alone = attn.display_tokens(expected_tokenizer, ids)[len(expected_gen.prompt_ids):]
        assert generated == " ".join(f"[{t}]" for t in alone)
        assert bench_running, "the benchmark ended before the attention session: nothing ran at the same time"
        assert "PASS" in parity.inner_text() and "FAIL" not in parity.inner_text()
        assert dialogs == []
        assert bench.external_requests == [] and look.external_requests == []
    finally:
        bench.context.close()
        look.context.close()
