"""Inside page speed and memory on a real store model (default SmolLM2 135M), per view.

For each view (architecture, logit lens, attribution, base vs tuned) and each text length
(``--tokens``, default 64 and 512), a **fresh process** loads the model(s), then measures:

- ``compute``: the ``workbench.interpret`` call the page makes (same arguments and defaults);
- ``figures``: building what the page draws from the result and serialising it as Streamlit sends
  it (plotly JSON, HTML);
- ``peak``: the process's peak RSS during the view over its RSS once the model(s) were loaded
  (sampled every 5 ms), and the process's whole peak (``ru_maxrss``, loading included).

Architecture does not depend on the text: it is measured once. Base vs tuned needs a second model
that shares the tokenizer: unless ``--tuned`` names one, the benchmark builds its own store
(``--home``, default a folder under the temp dir, reused) holding a link to the installed model and
a copy of it with one layer's MLP and attention weights perturbed by 5 % noise, added through
``Store.add`` as a custom model.

With ``--browser``, against ``streamlit run app.py`` on that store in headless Chromium (network
blocked): seconds from clicking a tab (architecture) or a tab's button (the others) until its
figures are drawn, the model already loaded (a first untimed lens run loads it). This includes the
harness's fixed 0.15 s of settling in ``wait_idle``.

The machine may be shared: the load average is printed with the table. Prints a table for people,
then one line of JSON.

    .venv/bin/python benchmarks/inside_bench.py [--model ID] [--tokens 64,512] [--browser]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIEWS = ("architecture", "lens", "attribution", "compare")
TUNED_SUFFIX = "-perturbed"


def bench_text(tokenizer, n: int) -> list[int]:
    from workbench.latency.harness import BENCH_TEXT

    ids = tokenizer(BENCH_TEXT * (1 + n // 40))["input_ids"]
    if len(ids) < n:
        raise SystemExit(f"the benchmark text is only {len(ids)} tokens")
    return ids[:n]


# --- a store with a tuned copy --------------------------------------------------------------------

def build_home(home: Path, model_id: str, source: Path) -> str:
    """``home`` with a link to the installed ``model_id`` and ``<model_id>-perturbed`` (layer L/2's
    MLP down projection and query projection + 5 % noise) added as a custom model; returns its id.
    ``source``: the store that has the model installed."""
    from workbench.store import INSTALLED, Store

    tuned_id = model_id + TUNED_SUFFIX
    real = Store(source).models_dir / model_id
    if not real.exists():
        raise SystemExit(f"{model_id} is not installed: `workbench store install {model_id}` first.")
    (home / "models").mkdir(parents=True, exist_ok=True)
    link = home / "models" / model_id
    if not link.exists():
        link.symlink_to(real)
    store = Store(home)
    if store.catalog.resolve(tuned_id) is not None and store.entry(tuned_id).status == INSTALLED:
        return tuned_id
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(real, dtype=torch.float32)
    layer = model.config.num_hidden_layers // 2
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if f"layers.{layer}." in name and ("down_proj" in name or "q_proj" in name):
                p.add_(torch.randn(p.shape, generator=g) * 0.05 * p.abs().mean())
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(real).save_pretrained(tmp)
        store.add(tuned_id, local_dir=tmp, name=f"{model_id} (layer {layer} perturbed)",
                  description="Benchmark copy: one layer's weights + 5 % noise.")
    return tuned_id


# --- one view in this process ----------------------------------------------------------------------

def run_view(view: str, tokens: int, model_id: str, tuned_id: str) -> dict:
    """Load, then time one view as the page runs it; returns numbers (ms, bytes)."""
    import plotly.io as pio
    import torch

    from workbench.common import PeakRSS
    from workbench.interpret import architecture, attribution, compare, lens
    from workbench.runtime.loading import load_model
    from workbench.views import interpret as views

    t = time.perf_counter()
    model = load_model(model_id, device="cpu", attn_implementation="eager")
    tuned = load_model(tuned_id, device="cpu", attn_implementation="eager") if view == "compare" else None
    load_ms = (time.perf_counter() - t) * 1000
    ids = bench_text(model.tokenizer, tokens)
    extra: dict = {}
    with PeakRSS() as rss:
        t = time.perf_counter()
        if view == "architecture":
            result = architecture.architecture(model)
        elif view == "lens":
            result = lens.logit_lens(model, ids=ids, top_k=5, max_positions=views.LENS_MAX_COLUMNS)
        elif view == "attribution":
            result = attribution.attribute(model, ids=ids)
        else:
            result = compare.compare(model, tuned, ids=ids, max_positions=views.LENS_MAX_COLUMNS)
        compute_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        if view == "architecture":
            drawn = [pio.to_json(views.architecture_diagram(result)), pio.to_json(views.parameter_treemap(result)),
                     result.by_group().to_json(), result.frame().to_json()]
        elif view == "lens":
            drawn = [pio.to_json(views.lens_heatmap(result)), pio.to_json(views.target_figure(result))]
        elif view == "attribution":
            drawn = [views.attribution_html(result), pio.to_json(views.attribution_figure(result))]
            extra = {"steps": result.steps, "steps_asked": result.steps_asked, "baseline": result.baseline,
                     "rule": "adaptive trapezoid", "stop": result.stop,
                     "completeness_relative": result.completeness_relative,
                     "completeness_error": result.completeness_error, "notes": result.notes,
                     "timings_ms": result.timings_ms}
        else:
            drawn = [pio.to_json(f) for f in (views.changes_figure(result), views.lens_heatmap(result.base_lens),
                                              views.lens_heatmap(result.tuned_lens), views.lens_difference(result),
                                              views.head_change_figure(result))]
            extra = {"kl": result.kl}
        figures_ms = (time.perf_counter() - t) * 1000
    return {"view": view, "tokens": len(ids), "load_ms": load_ms, "compute_ms": compute_ms,
            "figures_ms": figures_ms, "sent_bytes": sum(len(d) for d in drawn), "peak_growth_bytes": rss.grown,
            "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "threads": torch.get_num_threads(), **extra}


def fresh_process(view: str, tokens: int, args, tuned_id: str) -> dict:
    cmd = [sys.executable, __file__, "--child", view, "--tokens", str(tokens), "--model", args.model,
           "--tuned", tuned_id]
    env = dict(os.environ, WORKBENCH_HOME=str(args.home), PYTHONPATH=str(ROOT))
    if args.threads:
        env["WORKBENCH_BENCH_THREADS"] = str(args.threads)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{view} @ {tokens} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the browser ----------------------------------------------------------------------------------

READY = {  # what must be drawn before a view counts as shown
    "architecture": [".st-key-ins_arch_diagram .js-plotly-plot .annotation-text",
                     ".st-key-ins_arch_treemap .js-plotly-plot .treemaplayer path"],
    "lens": [".st-key-ins_lens_map .js-plotly-plot .heatmaplayer",
             ".st-key-ins_lens_target_view .js-plotly-plot .scatterlayer"],
    "attribution": [".st-key-ins_attr_tokens .wb-tok", ".st-key-ins_attr_chart .js-plotly-plot .barlayer"],
    "compare": [".st-key-ins_cmp_changes .js-plotly-plot .barlayer", ".st-key-ins_cmp_diff .js-plotly-plot .heatmaplayer",
                ".st-key-ins_cmp_heads .js-plotly-plot .heatmaplayer"],
}
SHOT_PARTS = {"attribution": ("ins_attr_tokens", "ins_attr_chart", "ins_attr_path"),
              "compare": ("ins_cmp_changes", "ins_cmp_diff", "ins_cmp_heads")}
TAB = {"architecture": "Architecture", "lens": "Logit lens", "attribution": "Attribution", "compare": "Base vs tuned"}
BUTTON = {"lens": "Run the lens", "attribution": "Attribute", "compare": "Compare"}


def browser_click_to_drawn(home: Path, model_id: str, tuned_id: str, texts: dict[int, str],
                           shots: Path | None = None) -> dict[tuple[str, int], float]:
    """Seconds from the click to the view drawn, per (view, tokens); the model is loaded first."""
    from playwright.sync_api import sync_playwright

    from workbench.store import Store
    from workbench.testing.browser import CHROMIUM, CHROMIUM_ARGS, new_page, start_app, stop_app, wait_idle

    times: dict[tuple[str, int], float] = {}
    proc, url = start_app(home)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = new_page(browser, height=1300)
            page.set_default_timeout(600_000)
            page.goto(url + "/inside")
            wait_idle(page, 600_000)
            box = page.get_by_role("combobox", name="Model")
            name = Store(home).card(model_id).name
            if name not in box.input_value():
                box.click()
                page.get_by_role("option", name=name, exact=True).click()
                wait_idle(page, 600_000)
            for n, text in texts.items():
                page.locator(".st-key-ins_text textarea").fill(text)
                page.keyboard.press("Control+Enter")
                wait_idle(page, 600_000)
                for view in VIEWS:
                    if view == "architecture" and n != next(iter(texts)):
                        continue  # the same drawing whatever the text
                    if view == "architecture":  # the first tab: open another one, then time its opening
                        page.get_by_role("tab", name=TAB["lens"], exact=True).click()
                        wait_idle(page, 600_000)
                        page.get_by_role("button", name=BUTTON["lens"]).click()  # loads the model, untimed
                        wait_idle(page, 600_000)
                        t = time.perf_counter()
                        page.get_by_role("tab", name=TAB[view], exact=True).click()
                    else:
                        page.get_by_role("tab", name=TAB[view], exact=True).click()
                        wait_idle(page, 600_000)
                        if view == "compare":
                            page.locator(".st-key-ins_cmp_tuned").wait_for()
                        t = time.perf_counter()
                        page.get_by_role("button", name=BUTTON[view]).click()
                    wait_idle(page, 600_000)
                    for target in READY[view]:
                        page.locator(target).first.wait_for(state="attached", timeout=120_000)
                    times[(view, n)] = time.perf_counter() - t
                    if shots:  # the top of the page, then each drawn part (the page scrolls inside stMain)
                        shots.mkdir(parents=True, exist_ok=True)
                        page.locator('[data-testid="stMain"]').screenshot(path=str(shots / f"inside-{view}-{n}.png"))
                        for key in SHOT_PARTS.get(view, ()):
                            page.locator(f".st-key-{key}").screenshot(path=str(shots / f"inside-{view}-{n}-{key}.png"))
            blocked = page.external_requests
            browser.close()
    finally:
        stop_app(proc)
    if blocked:
        raise SystemExit(f"the page reached outside this machine: {blocked}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tuned", default=None, help="a store model sharing the tokenizer (default: build one)")
    ap.add_argument("--tokens", default="64,512")
    ap.add_argument("--views", default=",".join(VIEWS))
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "workbench-inside-bench")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the measuring processes")
    ap.add_argument("--browser", action="store_true", help="also time click-to-drawn in Chromium")
    ap.add_argument("--shots", type=Path, default=None, help="save a screenshot of each view drawn in Chromium")
    ap.add_argument("--child", choices=VIEWS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if os.environ.get("WORKBENCH_BENCH_THREADS"):
            import torch

            torch.set_num_threads(int(os.environ["WORKBENCH_BENCH_THREADS"]))
        print(json.dumps(run_view(args.child, int(args.tokens), args.model, args.tuned)))
        return

    from workbench.store import Store

    source = Store().home  # $WORKBENCH_HOME or the default store, before it is pointed at the bench's
    os.environ["WORKBENCH_HOME"] = str(args.home)
    tuned_id = args.tuned or build_home(args.home, args.model, source)
    sizes = [int(n) for n in args.tokens.split(",")]
    views = args.views.split(",")
    load_before = os.getloadavg()
    rows = []
    for view in views:
        for n in sizes[:1] if view == "architecture" else sizes:
            rows.append(fresh_process(view, n, args, tuned_id))
            print(f"  measured {view} @ {n} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    clicks: dict = {}
    if args.browser:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(Store(args.home).models_dir / args.model)
        texts = {n: tok.decode(bench_text(tok, n)) for n in sizes}
        clicks = browser_click_to_drawn(args.home, args.model, tuned_id, texts, args.shots)
    load_after = os.getloadavg()

    print(f"{args.model} vs {tuned_id}, CPU, {rows[0]['threads']} threads; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after ({os.cpu_count()} cores)")
    head = (f"{'view':<13}{'tokens':>7}{'load s':>8}{'compute s':>11}{'figures s':>11}"
            f"{'peak +MiB':>11}{'RSS max MiB':>13}{'click→drawn s':>15}")
    print(head)
    for r in rows:
        click = clicks.get((r["view"], r["tokens"] if r["view"] != "architecture" else sizes[0]))
        print(f"{r['view']:<13}{r['tokens'] if r['view'] != 'architecture' else '-':>7}{r['load_ms'] / 1000:>8.1f}"
              f"{r['compute_ms'] / 1000:>11.2f}{r['figures_ms'] / 1000:>11.2f}{r['peak_growth_bytes'] / 2**20:>11.0f}"
              f"{r['ru_maxrss_bytes'] / 2**20:>13.0f}{'' if click is None else f'{click:.2f}':>15}")
    for r in rows:
        if r["view"] == "attribution":
            print(f"attribution @ {r['tokens']}: IG {r['steps']} steps ({r['rule']}, asked {r['steps_asked']}), "
                  f"baseline {r['baseline']}, completeness error {r['completeness_error']:.3g} logit = "
                  f"{r['completeness_relative']:.2%}; " + ", ".join(f"{k} {v / 1000:.1f} s" for k, v in r["timings_ms"].items()))
            for note in r["notes"]:
                print(f"  reduced: {note}")
    print(json.dumps({"model": args.model, "tuned": tuned_id, "load_average": [load_before[0], load_after[0]],
                      "rows": rows, "browser_click_to_drawn_s": {f"{v}@{n}": s for (v, n), s in clicks.items()}}))


if __name__ == "__main__":
    main()
