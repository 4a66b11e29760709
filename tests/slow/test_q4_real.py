"""The real SmolLM2-135M q4 graph built from its Q4_1 GGUF's own blocks: every matrix mapped, the
weights read per token cut about 4x, logits equal to torch fp32 within the fp32 bar and 64/64
greedy tokens; q4a8 runs and its drift is reported (slow: the fused export first, then ~2 min)."""
import json

import pytest

from workbench.latency.parity import check_parity
from workbench.onnx.cache import export_model
from workbench.onnx.spec import EXPORT_MANIFEST, WIDE_CODES_ENV, weight_bytes_per_token
from workbench.runtime.backends import make_backend
from workbench.runtime.loading import load_model

MODEL = "smollm2-135m-instruct"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(real_store):
    return load_model(MODEL, store=real_store, device="cpu")


def test_q4_uses_every_gguf_block_and_keeps_fp32_parity(model, real_store, monkeypatch):
    monkeypatch.setenv(WIDE_CODES_ENV, "halves")  # every matrix in blocks (measure may keep the head fp32)
    export = export_model(real_store, MODEL, "q4")
    manifest = json.loads((export.directory / EXPORT_MANIFEST).read_text())
    assert manifest["fp32_left"] == [] and manifest["unused_gguf"] == []
    assert {row["gguf_type"] for row in manifest["mapping"]} == {"Q8_0", "Q4_1"}
    fused = export_model(real_store, MODEL, "fused")
    assert weight_bytes_per_token(export.onnx_path) < weight_bytes_per_token(fused.onnx_path) / 4
    report = check_parity(model, make_backend(model, "onnxruntime-q4", store=real_store), steps=64)
    assert report.greedy_match == 64, report.verdict
    assert report.max_abs_diff <= report.tolerance, report.verdict


def test_q4a8_runs_and_reports_its_drift(model, real_store):
    report = check_parity(model, make_backend(model, "onnxruntime-q4a8", store=real_store), steps=16)
    assert report.variant == "q4a8" and not report.threshold.judge_logits
    assert report.max_abs_diff > 0 and report.greedy_total == 16


def test_llamacpp_runs_the_same_gguf_and_keeps_sequences_apart(model, real_store):
    pytest.importorskip("llama_cpp")
    import torch

    backend = make_backend(model, "llamacpp", store=real_store)
    ids = torch.tensor([model.tokenizer("The capital of France is")["input_ids"]])
    first, state = backend.prefill(ids)
    other, _ = backend.prefill(torch.tensor([[1, 2, 3]]))  # another sequence takes the cache
    again, _ = backend.step(int(first.argmax()), state)  # fed again from its own tokens
    fresh, _ = backend.prefill(torch.cat([ids, first.argmax().view(1, 1)], 1))
    assert torch.allclose(again, fresh, atol=1e-3)
    report = check_parity(model, backend, steps=16)
    assert report.variant == "gguf" and report.greedy_match >= 8, report.verdict
