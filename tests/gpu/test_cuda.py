"""The CUDA paths: torch on the GPU, ONNX Runtime's CUDA execution provider, and the benchmark's
GPU clocks and memory. Skipped where there is no GPU (CI has none); run them on a GPU machine with
``pytest -m gpu`` (``scripts/gpu_check.sh`` does it on a bare machine)."""
import pytest
import torch

from workbench.testing.exports import seed_export
from workbench.latency.harness import BenchConfig, run_benchmark
from workbench.runtime.generation import generate
from workbench.runtime.devices import available_devices
from workbench.runtime.loading import load_model
from workbench.runtime.backends import make_backend
from workbench.runtime.backends.ort import OrtBackend, cuda_provider_available
from workbench.latency.parity import check_parity

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]
needs_ort_cuda = pytest.mark.skipif(
    not cuda_provider_available(), reason="this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
)


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_torch_on_cuda_generates_what_the_cpu_generates(tiny_store, model_id):
    assert available_devices() == ["cpu", "cuda"]
    on_gpu = load_model(model_id, store=tiny_store, device="cuda")
    assert next(on_gpu.module.parameters()).is_cuda
    on_cpu = load_model(model_id, store=tiny_store, device="cpu")
    got = generate(on_gpu, "Once upon a time", max_new_tokens=16, stop_at_eos=False)
    ref = generate(on_cpu, "Once upon a time", max_new_tokens=16, stop_at_eos=False)
    assert got.device == "cuda" and got.token_ids == ref.token_ids
    for a, b in zip(ref.tokens, got.tokens):
        assert a.prob == pytest.approx(b.prob, abs=1e-4)


@needs_ort_cuda
@pytest.mark.parametrize("backend_name", ["onnxruntime", "onnxruntime-fused"])
def test_onnxruntime_runs_on_the_cuda_provider_with_parity(tiny_store, backend_name):
    variant = "fp32" if backend_name == "onnxruntime" else "fused"
    seed_export(tiny_store, "tiny-llama", variant)
    model = load_model("tiny-llama", store=tiny_store, device="cuda")
    backend = make_backend(model, backend_name, store=tiny_store)
    assert backend.device == "cuda" and backend.note == ""
    assert backend.providers[0] == "CUDAExecutionProvider"
    settings = backend.settings()
    assert settings["device"] == "cuda" and settings["providers"][0] == "CUDAExecutionProvider"
    report = check_parity(model, backend, steps=20)  # against torch on the same GPU
    assert report.passed, report.verdict
    result = generate(model, "Once upon a time", backend=backend, max_new_tokens=16, stop_at_eos=False)
    assert result.device == "cuda" and result.backend == backend_name
    assert result.token_ids == generate(model, "Once upon a time", max_new_tokens=16, stop_at_eos=False).token_ids


@needs_ort_cuda
def test_the_kv_cache_stays_on_the_gpu_between_steps(tiny_store):
    export = seed_export(tiny_store, "tiny-llama")
    backend = OrtBackend(export, "cuda")
    _, state = backend.prefill(torch.tensor([[5, 6, 7]]))
    _, state = backend.step(8, state)
    assert state.length == 4
    assert all(v.device_name().lower() == "cuda" for v in state.past)
    assert state.past[0].shape() == [1, export.kv_heads, 4, export.head_dim]


@needs_ort_cuda
def test_benchmark_on_cuda_records_the_gpu_and_its_memory(tiny_store):
    seed_export(tiny_store, "tiny-llama")
    model = load_model("tiny-llama", store=tiny_store, device="cuda")
    backends = {"torch": make_backend(model, "torch"), "onnxruntime": make_backend(model, "onnxruntime", store=tiny_store)}
    config = BenchConfig(prompt_lengths=(8, 16), new_tokens=8, decode_prompt_length=16, min_repeats=2,
                         min_time_s=0.0, device="cuda")
    result = run_benchmark(model, backends, config)
    assert result.env["gpu"] == torch.cuda.get_device_name(0)
    for r in result.results:
        assert r.device == "cuda"
        assert r.gpu_peak_mb and r.gpu_peak_mb > 0
        assert r.decode.p50 > 0 and set(r.prefill) == {8, 16}
    assert result.parity["onnxruntime"].passed, result.parity["onnxruntime"].verdict
    assert result.to_json()["results"][1]["device"] == "cuda"
