"""The benchmark harness and benchmarks/quantized.py with a native backend that segfaults: its
failure (with the signal) is in the result, and every other backend's numbers stand and print."""
import importlib.util
import json
from pathlib import Path

import pytest

from workbench.latency.harness import BenchConfig, run_benchmark
from workbench.runtime.backends import isolated, make_backend
from workbench.runtime.backends.isolated import IsolatedBackend
from workbench.runtime.loading import load_model
from workbench.views.latency import html_report

QUICK = BenchConfig(prompt_lengths=(8, 24), new_tokens=4, decode_prompt_length=16, warmup=1,
                    min_repeats=2, min_time_s=0.0, max_repeats=2)
OPENER = "test_isolation:FakeNative"  # the fake native backend, opened by the child
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def model(tiny_store):
    return load_model("tiny-llama", store=tiny_store, device="cpu")


def fake(model, **options):
    return IsolatedBackend("fake-native", OPENER, {"vocab": model.config.vocab_size, **options})


def test_a_segfault_at_the_first_evaluation_fails_only_that_backend(model):
    backends = {"torch": make_backend(model, "torch"), "fake-native": fake(model, crash="segv")}
    result = run_benchmark(model, backends, QUICK)
    assert [r.backend for r in result.results] == ["torch"]  # the rest of the table stands
    assert result.result("torch").decode.count == 2 * (QUICK.new_tokens - 1)
    failure = result.failures["fake-native"]
    assert failure["signal"] == "SIGSEGV" and failure["during"] == "warm-up" and failure["phase"] == "first prefill"
    data = json.loads(json.dumps(result.to_json()))
    assert data["failures"]["fake-native"]["signal"] == "SIGSEGV" and [r["backend"] for r in data["results"]] == ["torch"]
    assert list(result.summary()["backend"]) == ["torch"]
    assert result.failures_frame().to_dict(orient="records")[0]["signal"] == "SIGSEGV"
    assert "SIGSEGV" in html_report(result) and result.machine in html_report(result)


def test_a_crash_while_timed_keeps_the_others_rounds(model):
    # warm-up reads 3 prompts (2 prefills + 1 generation), so the 5th prefill is a timed one
    backends = {"torch": make_backend(model, "torch"), "fake-native": fake(model, crash="abort", after=4)}
    result = run_benchmark(model, backends, QUICK, parity=False)
    assert result.failures["fake-native"]["signal"] == "SIGABRT"
    assert result.failures["fake-native"]["during"] == "prefill 8 tokens"
    torch_result = result.result("torch")
    assert all(lat.count == 2 for lat in torch_result.prefill.values()) and torch_result.e2e.count == 2


def test_a_healthy_native_backend_is_timed_and_checked_like_the_others(model):
    backends = {"torch": make_backend(model, "torch"), "fake-native": fake(model)}
    result = run_benchmark(model, backends, QUICK)
    assert not result.failures and [r.backend for r in result.results] == ["torch", "fake-native"]
    row = result.result("fake-native")
    assert row.settings["isolation"] == "child process" and row.weight_bytes == 1234
    assert result.parity["fake-native"].variant == "gguf"  # judged on tokens, as llama.cpp is


def test_quantized_benchmark_prints_the_others_and_exits_with_its_documented_code(tiny_store, capsys):
    spec = importlib.util.spec_from_file_location("quantized_bench", ROOT / "benchmarks" / "quantized.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def build(model, name, progress, device, threads, store):
        return fake(model, crash="segv")

    isolated.register_native("fake-native", build)
    try:
        code = bench.main(["--model", "tiny-llama", "--backends", "torch,fake-native", "--dataset", "",
                           "--prompt-lengths", "8", "--new-tokens", "3", "--repeats", "1", "--min-time", "0",
                           "--decode-context", "16", "--threads", "1"])
    finally:
        isolated.unregister_native("fake-native")
    out = capsys.readouterr().out.splitlines()
    assert code == bench.BACKEND_FAILED == 3
    assert out[0].startswith("Machine: ") and "cores" in out[0]
    assert any(line.startswith("torch ") and " ms" in line for line in out)  # torch's row printed
    assert any(line.startswith("FAILED fake-native: died with SIGSEGV during warm-up") for line in out)
    data = json.loads(out[-1])
    assert data["failures"]["fake-native"]["signal"] == "SIGSEGV" and data["machine"] == out[0][len("Machine: "):]
    assert [r["backend"] for r in data["results"]] == ["torch"]


def test_workbench_bench_prints_the_others_and_exits_3(tiny_store, capsys):
    from workbench.cli import main
    from workbench.cli import onnx as onnx_cli

    def build(model, name, progress, device, threads, store):
        return fake(model, crash="segv")

    isolated.register_native("fake-native", build)
    try:
        code = main(["bench", "tiny-llama", "--backends", "torch,fake-native", "--prompt-lengths", "8",
                     "--new-tokens", "3", "--repeats", "1", "--min-time", "0", "--threads", "1"])
    finally:
        isolated.unregister_native("fake-native")
    out = capsys.readouterr().out.splitlines()
    assert code == onnx_cli.BACKEND_FAILED == 3
    assert out[0].startswith("Machine: ")
    assert any(line.startswith("torch ") for line in out)
    assert any(line.startswith("FAILED fake-native: died with SIGSEGV") for line in out)
