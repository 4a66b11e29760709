"""The real SmolLM2-135M fp32 export (and the fused graph made from it) against torch (slow: the
first export takes ~2-4 min and 0.5 GB; it is cached in the store, so with ``WORKBENCH_REAL_HOME``
set CI exports once)."""
import pytest

from workbench.runtime.generation import generate
from workbench.runtime.loading import load_model
from workbench.onnx.cache import cached_export, export_model
from workbench.runtime.backends import make_backend
from workbench.latency.parity import check_parity

MODEL = "smollm2-135m-instruct"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(real_store):
    export = export_model(real_store, MODEL, "fp32")
    model = load_model(MODEL, store=real_store, device="cpu")
    return model, make_backend(model, "onnxruntime", store=real_store), export


def test_export_is_cached_with_its_interface(smollm2, real_store):
    model, _, export = smollm2
    assert cached_export(real_store, MODEL, "fp32") == export
    assert (export.num_layers, export.kv_heads, export.head_dim, export.vocab_size) == (30, 3, 64, 49152)
    # the tied embedding is stored once: about 135M fp32 parameters
    assert 500e6 < export.size_bytes < 600e6


def test_fp32_parity_and_64_greedy_tokens_identical(smollm2):
    model, backend, _ = smollm2
    report = check_parity(model, backend, steps=64)
    assert report.greedy_total == 64
    assert report.greedy_match == 64 and report.first_mismatch is None, report.verdict
    assert report.max_abs_diff <= report.tolerance, report.verdict
    assert report.passed


def test_chat_answer_is_the_same_on_onnxruntime(smollm2):
    model, backend, _ = smollm2
    settings = dict(chat=True, max_new_tokens=24)
    ref = generate(model, "What is the capital of France?", **settings)
    got = generate(model, "What is the capital of France?", backend=backend, **settings)
    assert got.token_ids == ref.token_ids
    assert "Paris" in got.text


def test_fused_graph_keeps_fp32_parity_on_the_real_model(smollm2, real_store):
    model, _, fp32 = smollm2
    backend = make_backend(model, "onnxruntime-fused", store=real_store)
    export = backend.export
    assert export.variant == "fused" and export.num_layers == fp32.num_layers
    report = check_parity(model, backend, steps=64)
    assert report.greedy_match == 64 and report.max_abs_diff <= report.tolerance, report.verdict
    # the bar comes from this machine's fp32 noise floor, and is more than float rounding
    assert 0 < report.noise_floor and report.tolerance == max(8 * report.noise_floor, 64 * 2**-23 * report.logit_scale)
