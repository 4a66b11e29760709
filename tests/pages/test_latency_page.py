"""Latency page through streamlit.testing (no browser, no JavaScript)."""
import json
import re

import pytest

from workbench.testing.exports import seed_export


@pytest.fixture
def page(open_page):
    at = open_page("pages/latency.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    return at


def configure(at, backends=("torch", "onnxruntime"), lengths=(16, 32), new_tokens=4):
    at.multiselect(key="lat_backends").set_value(list(backends))
    at.multiselect(key="lat_lengths").set_value(list(lengths))
    at.number_input(key="lat_new_tokens").set_value(new_tokens)
    at.run()
    return at


def specs(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_one_button_exports_checks_and_times(page, tiny_store):
    from workbench.latency.speeds import measured_speeds
    from workbench.onnx.cache import cached_export

    configure(page)
    assert any("First run exports onnxruntime" in c.value for c in page.caption)
    page.button(key="lat_run").click().run()
    assert not page.exception, [e.value for e in page.exception]
    assert not page.error, [e.value for e in page.error]
    assert cached_export(tiny_store, "tiny-llama", "fp32") is not None  # exported through the page
    result, notes = page.session_state["wb_latency"]
    assert [r.backend for r in result.results] == ["torch", "onnxruntime"] and notes == []
    assert any("PASS (fp32)" in s.value and "onnxruntime" in s.value for s in page.success)
    figures = specs(page)
    assert len(figures) == 3
    assert [t["name"] for t in figures[0]["data"]] == ["torch", "onnxruntime"]
    assert figures[0]["data"][0]["x"] == [16, 32]
    assert figures[1]["data"][0]["x"] == ["torch", "onnxruntime"]
    metrics = {m.label: m.value for m in page.metric}
    assert set(metrics) == {"torch", "onnxruntime"}
    assert all(re.fullmatch(r"[\d.]+ ms", v) for v in metrics.values())
    labels = [b.label for b in page.get("download_button")]
    assert labels == ["CSV", "JSON", "HTML report"]
    assert set(measured_speeds(tiny_store, "tiny-llama")) == {"torch", "onnxruntime"}
    page.run()
    assert not any("First run exports" in c.value for c in page.caption)  # cached now
    assert len(specs(page)) == 3  # the result stays on screen across reruns


def test_int8_drift_is_shown_as_a_verdict(page, tiny_store):
    seed_export(tiny_store, "tiny-llama", "int8")
    configure(page, backends=("onnxruntime-int8",))
    page.button(key="lat_run").click().run()
    assert not page.exception, [e.value for e in page.exception]
    result, _ = page.session_state["wb_latency"]
    # torch is added as the reference for parity and speed-up
    assert [r.backend for r in result.results] == ["torch", "onnxruntime-int8"]
    report = result.parity["onnxruntime-int8"]
    verdicts = [e.value for e in page.error] + [s.value for s in page.success] + [w.value for w in page.warning]
    assert any(report.verdict in v for v in verdicts)
    assert any("max |Δlogits|" in v for v in verdicts)
    if not report.passed:  # drift is expected of int8: a warning, not an error
        assert not any(report.verdict in e.value for e in page.error)


def test_settings_that_do_not_fit_say_how_to_fix_them(page, tiny_store):
    seed_export(tiny_store, "tiny-llama")
    configure(page, lengths=(64,), new_tokens=200)
    page.button(key="lat_run").click().run()
    assert not page.exception
    # new tokens are clipped to the context, so this runs; an empty backend list cannot start
    assert page.session_state["wb_latency"][0].config.new_tokens == 128 - 64
    page.multiselect(key="lat_backends").set_value([]).run()
    assert page.button(key="lat_run").disabled


def test_failed_export_is_shown_and_the_page_keeps_running(page, tiny_store):
    from pages._shared import get_model

    get_model("tiny-llama", "cpu")  # torch has the model in memory; the exporter reads the files
    weights = tiny_store.path("tiny-llama") / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)
    configure(page)
    page.button(key="lat_run").click().run()
    assert not page.exception, [e.value for e in page.exception]
    assert any("Exporting to ONNX failed" in e.value and "Nothing was kept" in e.value for e in page.error)
    assert "wb_latency" not in page.session_state
    assert page.button(key="lat_run").label == "Export, check and time"  # ready for another try


def test_generate_page_can_run_on_onnxruntime(open_page, tiny_store):
    """The Generate page's backend selector, built on ``ort_backend.available_backends`` and
    ``make_backend``: the first ONNX run exports (with progress), and greedy text is unchanged."""
    at = open_page("pages/generate.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    assert at.selectbox(key="gen_backend").options == ["torch", "onnxruntime", "onnxruntime-fused", "onnxruntime-int8"]
    at.text_area(key="gen_prompt").set_value("Once upon a time").run()
    at.number_input(key="gen_max_new").set_value(8).run()
    at.button(key="gen_go").click().run()
    on_torch = at.session_state["wb_last_generation"]
    at.selectbox(key="gen_backend").set_value("onnxruntime").run()
    at.button(key="gen_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    on_ort = at.session_state["wb_last_generation"]
    assert (on_torch.backend, on_ort.backend) == ("torch", "onnxruntime")
    assert on_ort.token_ids == on_torch.token_ids
    assert any("onnxruntime on cpu" in c.value for c in at.caption)


class SegfaultingNative:
    """A native backend for the test (opened in its child process): it segfaults at its first
    evaluation, as llama.cpp's AMX build did."""

    device, variant = "cpu", "gguf"

    def prefill(self, input_ids):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)

    def step(self, token_id, state):
        raise AssertionError("never reached")


def test_a_native_backend_that_segfaults_is_shown_as_failed_and_the_page_keeps_running(page, tiny_store):
    from workbench.runtime.backends import isolated

    def build(model, name, progress, device, threads, store):
        return isolated.IsolatedBackend(name, f"{__name__}:SegfaultingNative")

    seed_export(tiny_store, "tiny-llama")
    isolated.register_native("fake-native", build)
    try:
        page.run()
        assert "fake-native" in page.multiselect(key="lat_backends").options
        configure(page, backends=("torch", "fake-native"))
        page.button(key="lat_run").click().run()
    finally:
        isolated.unregister_native("fake-native")
    assert not page.exception, [e.value for e in page.exception]
    result, _ = page.session_state["wb_latency"]
    assert [r.backend for r in result.results] == ["torch"]  # the rest of the table stands
    assert result.failures["fake-native"]["signal"] == "SIGSEGV"
    errors = [e.value for e in page.error]
    assert any("fake-native" in e and "SIGSEGV" in e and "warm-up" in e for e in errors), errors
    assert {m.label for m in page.metric} == {"torch"} and len(specs(page)) == 3
    assert any(f"Measured on **{result.machine}**" in c.value for c in page.caption)
    assert any(flag in result.machine for flag in ("avx2", "asimd", "no vector flags read"))
    assert page.button(key="lat_run").label == "Export, check and time"  # ready for another run
