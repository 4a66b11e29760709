"""OrtBackend in the generation loop, backend selection, provider fallback, and parity."""
import threading

import pytest

from workbench.testing.exports import seed_export
from workbench.runtime.backends.torch_eager import TorchBackend
from workbench.errors import WorkbenchError
from workbench.runtime.generation import generate
from workbench.runtime.loading import load_model
from workbench.runtime.backends import available_backends, make_backend
from workbench.runtime.backends.ort import OrtBackend
from workbench.latency.parity import THRESHOLDS, check_parity


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_generation_on_onnxruntime_equals_torch(tiny_store, model_id):
    seed_export(tiny_store, model_id)
    model = load_model(model_id, store=tiny_store, device="cpu")
    backend = make_backend(model, "onnxruntime", store=tiny_store)
    ref = generate(model, "Once upon a time", max_new_tokens=24, stop_at_eos=False)
    got = generate(model, "Once upon a time", backend=backend, max_new_tokens=24, stop_at_eos=False)
    assert got.token_ids == ref.token_ids
    assert got.backend == "onnxruntime" and got.device == "cpu"
    for a, b in zip(ref.tokens, got.tokens):
        assert a.prob == pytest.approx(b.prob, abs=1e-5)


def test_sampling_with_a_seed_is_the_same_on_both_backends(tiny_store):
    seed_export(tiny_store, "tiny-llama")
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    backend = make_backend(model, "onnxruntime", store=tiny_store)
    settings = dict(do_sample=True, temperature=1.3, seed=11, max_new_tokens=16, stop_at_eos=False)
    assert generate(model, "The quick", backend=backend, **settings).token_ids == generate(model, "The quick", **settings).token_ids


def test_backend_names_and_selection(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    assert available_backends(model) == ["torch", "onnxruntime", "onnxruntime-fused", "onnxruntime-int8"]
    assert available_backends(model.card) == available_backends(model)
    assert isinstance(make_backend(model, "torch"), TorchBackend)
    with pytest.raises(WorkbenchError, match="Unknown backend 'tensorrt'.*torch, onnxruntime"):
        make_backend(model, "tensorrt")


def test_make_backend_exports_on_first_use_with_progress(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu")
    seen = []
    backend = make_backend(model, "onnxruntime", progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)  # moves forward only, ends at 100 %
    assert backend.export.directory.is_relative_to(tiny_store.exports_dir / "tiny-gpt2")


def test_threads_and_providers_are_explicit_and_recorded(tiny_store):
    export = seed_export(tiny_store, "tiny-llama")
    backend = OrtBackend(export, "cpu", threads=1)
    settings = backend.settings()
    assert settings["threads"] == 1
    assert settings["providers"] == ["CPUExecutionProvider"]
    assert settings["backend"] == "onnxruntime" and settings["variant"] == "fp32"
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 1
    # the pool stops spinning when a run ends; CPU sessions share one memory arena
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert settings["session_config"] == {"session.force_spinning_stop": "1", "session.use_env_allocators": "1"}
    assert OrtBackend(export, "cpu").threads >= 1


def test_cuda_without_a_gpu_build_falls_back_to_cpu_with_a_note(tiny_store):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback is not reachable here")
    export = seed_export(tiny_store, "tiny-llama")
    backend = OrtBackend(export, "cuda")
    assert backend.device == "cpu"
    assert backend.providers == ("CPUExecutionProvider",)
    assert "onnxruntime-gpu" in backend.note and "CPU" in backend.note
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    assert generate(model, "Hi", backend=backend, max_new_tokens=3, stop_at_eos=False).device == "cpu"


def test_one_backend_serves_two_threads_at_once(tiny_store):
    seed_export(tiny_store, "tiny-llama")
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    backend = make_backend(model, "onnxruntime", store=tiny_store)
    prompts = ["Once upon a time", "The capital of France"]
    expected = {p: generate(model, p, max_new_tokens=20, stop_at_eos=False).token_ids for p in prompts}
    got, errors = {}, []

    def work(p):
        try:
            got[p] = generate(model, p, backend=backend, max_new_tokens=20, stop_at_eos=False).token_ids
        except Exception as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected


@pytest.mark.parametrize("backend, variant", [("onnxruntime", "fp32"), ("onnxruntime-fused", "fused")])
def test_fp32_parity_passes_with_the_issue_thresholds(tiny_store, backend, variant):
    seed_export(tiny_store, "tiny-gemma3", variant)
    model = load_model("tiny-gemma3", store=tiny_store, device="cpu")
    report = check_parity(model, make_backend(model, backend, store=tiny_store), steps=20)
    assert report.passed, report.verdict
    assert report.greedy_match == report.greedy_total == 20 and report.first_mismatch is None
    assert report.prompt_max_abs_diff <= 1e-4 and report.decode_max_abs_diff <= 1e-4
    assert report.decode_max_abs_diff > 0  # the decode steps were really compared
    assert report.verdict.startswith(f"PASS ({variant})") and report.threshold == THRESHOLDS["fp32"]
    assert report.to_json()["passed"] is True


class _Nudged:
    """A backend that adds ``delta`` to one logit: parity must notice."""

    def __init__(self, inner, delta, at_step=0):
        self.inner, self.delta, self.at_step = inner, delta, at_step
        self.name, self.device = "nudged", inner.device

    def _nudge(self, logits, n):
        if n >= self.at_step:
            logits = logits.clone()
            logits[7] += self.delta
        return logits

    def prefill(self, ids):
        logits, state = self.inner.prefill(ids)
        return self._nudge(logits, 0), (state, 1)

    def step(self, token, state):
        inner, n = state
        logits, inner = self.inner.step(token, inner)
        return self._nudge(logits, n), (inner, n + 1)

    def synchronize(self):
        self.inner.synchronize()


def test_parity_fails_on_a_small_logit_error(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    report = check_parity(model, _Nudged(TorchBackend(model), 5e-4, at_step=3), steps=8)
    assert report.prompt_max_abs_diff == 0.0
    assert report.decode_max_abs_diff == pytest.approx(5e-4, rel=1e-2)
    assert report.tolerance < 5e-4 and report.noise_floor < report.tolerance
    assert not report.passed and report.verdict.startswith("FAIL")


def test_tolerance_follows_the_measured_floor_and_never_falls_below_rounding(tiny_store):
    from workbench.latency.parity import tolerance_for

    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    report = check_parity(model, TorchBackend(model), steps=6)
    assert report.max_abs_diff == 0.0 and report.passed  # torch against torch, same kernels
    assert report.tolerance == tolerance_for(report.noise_floor, report.logit_scale)
    assert tolerance_for(1e-5, 2.0) == 8e-5  # 8x the floor ...
    assert tolerance_for(0.0, 20.0) == pytest.approx(64 * 2**-23 * 20)  # ... or 64 float32 steps
    data = report.to_json()
    assert {"tolerance", "noise_floor", "logit_scale"} <= set(data)
    assert data["threshold"]["tolerance_factor"] == 8.0


def test_parity_counts_diverging_tokens(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    report = check_parity(model, _Nudged(TorchBackend(model), 1e4, at_step=2), steps=8)
    assert report.first_mismatch == 2 and report.greedy_match < 8
    assert report.candidate_tokens[2] == 7
    assert not report.passed


def test_int8_is_judged_on_tokens_and_its_drift_is_reported(tiny_store):
    seed_export(tiny_store, "tiny-llama", "int8")
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    report = check_parity(model, make_backend(model, "onnxruntime-int8", store=tiny_store), steps=16)
    assert report.variant == "int8" and report.threshold == THRESHOLDS["int8"]
    assert report.prompt_max_abs_diff > 1e-4  # quantization moves logits; the number is shown
    assert report.passed == (report.greedy_match == report.greedy_total)
    assert "int8" in report.verdict and f"{report.greedy_match}/16" in report.verdict


def test_a_cache_built_from_a_view_owns_its_memory(tiny_store):
    import numpy as np
    import torch

    backend = OrtBackend(seed_export(tiny_store, "tiny-llama"), "cpu", threads=1)
    _, state = backend.prefill(torch.tensor([[1, 2, 3, 4]]))
    arrays = backend.cache_arrays(state.past)
    cut = backend.cache_from_arrays([a[:, :, 1:] for a in arrays])  # slices of the old buffers
    assert all(not np.shares_memory(new, old) for new, old in zip(cut.arrays, arrays))
    assert [a.shape[2] for a in backend.cache_arrays(cut)] == [3] * len(arrays)
    del state, arrays  # the old buffers go; the new cache still reads the same numbers
    assert all(np.isfinite(a).all() for a in backend.cache_arrays(cut))
