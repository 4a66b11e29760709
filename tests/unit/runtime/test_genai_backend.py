"""onnxruntime-genai as backends of their own: its builder's int4 graph (``onnxruntime-genai``)
and its fp32 graph (``onnxruntime-genai-fp32``), each built once into the store in a folder of its
own, run by its own loop in a child process; listed where ONNX Runtime's own decode graph can run;
the fp32 one within the fp32 bars of torch, and timed against ``onnxruntime-gqa`` (our loop, the
same builder graph) by benchmarks/quantized.py; a crash in it is that backend's failure, with its
signal.

The model is a tiny Llama with head size 16 (GroupQueryAttention on the CPU needs a multiple of
16; the shared tiny models have 8). The crash test runs the real backend's child over a fake
``onnxruntime_genai`` package that segfaults at its first evaluation."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime_genai")

from workbench.errors import WorkbenchError
from workbench.onnx.spec import weight_bytes_per_token
from workbench.runtime.backends import (
    ORT_GENAI,
    ORT_GENAI_FP32,
    ORT_GQA,
    ORT_GQA_Q4,
    available_backends,
    genai,
    head_size,
    make_backend,
)
from workbench.runtime.backends.isolated import (
    BackendCrashedError,
    IsolatedBackend,
    is_native,
)

MODEL = "h16-llama"
ROOT = Path(__file__).resolve().parents[3]


def _build_head16_llama(out: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench.testing.tiny_models import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def head16_store(tmp_path_factory):
    """A store holding the head-16 Llama, its genai graph built once for the module."""
    from workbench.runtime import loading
    from workbench.store import Store

    root = tmp_path_factory.mktemp("genai")
    store = Store(root / "home")
    store.add(MODEL, local_dir=_build_head16_llama(root / "h16"))
    yield store
    loading.unload()


@pytest.fixture(scope="module")
def model(head16_store):
    from workbench.runtime.loading import load_model

    return load_model(MODEL, store=head16_store, device="cpu")


def test_genai_is_listed_where_the_builder_route_can_run(head16_store, model, tiny_store):
    from workbench.runtime.backends import ALL_BACKENDS

    names = available_backends(model)
    assert {ORT_GQA, ORT_GENAI, ORT_GENAI_FP32} <= set(names) and ORT_GQA_Q4 not in names  # q4 needs a GGUF
    assert head_size(model) == 16
    card = head16_store.card(MODEL)
    assert not {ORT_GENAI, ORT_GENAI_FP32} & set(available_backends(card))  # a card alone: head size unknown
    assert available_backends(card, store=head16_store) == names  # its installed config tells
    assert is_native(ORT_GENAI) and is_native(ORT_GENAI_FP32) and {ORT_GENAI, ORT_GENAI_FP32} <= set(ALL_BACKENDS)
    tiny = tiny_store.card("tiny-llama")  # head size 8: GroupQueryAttention cannot take it
    assert not {ORT_GENAI, ORT_GENAI_FP32, ORT_GQA} & set(available_backends(tiny, store=tiny_store))


def test_genai_generates_in_its_own_process_from_a_graph_built_once(head16_store, model):
    import os

    from workbench.runtime.generation import generate

    backend = make_backend(model, ORT_GENAI, store=head16_store, threads=1)
    try:
        assert isinstance(backend, IsolatedBackend) and backend.proc.pid != os.getpid()
        settings = backend.settings()
        assert settings["isolation"] == "child process" and settings["variant"] == genai.VARIANT
        assert "re-quantiz" in settings["note"] and settings["threads"] == 1
        assert backend.weight_bytes_per_token() > 0
        target = genai.graph_dir(head16_store, MODEL)
        assert (target / "model.onnx").is_file() and (target / genai.BUILD_FILE).is_file()
        assert not list(head16_store.staging_dir.iterdir())  # built in staging, moved into place
        out = generate(model, "Once upon a time", backend=backend, max_new_tokens=8, stop_at_eos=False)
        assert len(out.token_ids) == 8 and out.backend == ORT_GENAI

        # a cached step continues the sequence the child holds; another sequence in between is
        # fed again, and an earlier state of the same sequence is rewound to: all equal to a prefill
        prompt = np.array([[5, 6, 7, 8]], np.int64)
        _, state = backend.prefill(prompt)
        direct, state2 = backend.step(9, state)
        backend.prefill(np.array([[11, 12]], np.int64))  # another sequence takes the generator
        refed, _ = backend.step(9, state)
        full, _ = backend.prefill(np.array([[5, 6, 7, 8, 9]], np.int64))
        backend.step(10, state2)
        rewound, _ = backend.step(9, state)  # a prefix of what the generator holds now
        for got in (direct, refed, rewound):
            assert int(got.argmax()) == int(full.argmax())
            assert (got - full).abs().max().item() < 0.05  # int8 activations: not bit-equal across paths
    finally:
        backend.close()
    mtime = (target / "model.onnx").stat().st_mtime_ns
    again = make_backend(model, ORT_GENAI, store=head16_store, threads=1)  # the graph is not built twice
    again.close()
    assert (target / "model.onnx").stat().st_mtime_ns == mtime


def test_genai_fp32_runs_the_builders_fp32_graph_in_a_folder_of_its_own_within_the_fp32_bars(head16_store, model):
    import json

    from workbench.latency.parity import check_parity

    backend = make_backend(model, ORT_GENAI_FP32, store=head16_store, threads=1)
    try:
        settings = backend.settings()
        assert settings["backend"] == ORT_GENAI_FP32 and settings["precision"] == "fp32"
        assert settings["variant"] == backend.variant == genai.FP32.variant == "genai_fp32"
        report = check_parity(model, backend, steps=16)
    finally:
        backend.close()
    assert report.variant == "genai_fp32" and report.threshold.judge_logits  # judged as fp32, not on tokens only
    assert report.greedy_match == report.greedy_total == 16, report.verdict
    assert report.max_abs_diff <= report.tolerance and report.passed, report.verdict

    fp32, int4 = genai.graph_dir(head16_store, MODEL, "fp32"), genai.graph_dir(head16_store, MODEL)
    assert fp32 != int4 and fp32.name.startswith("genai-fp32-") and int4.name.startswith("genai-int4-")
    facts = json.loads((fp32 / genai.BUILD_FILE).read_text())
    assert facts["precision"] == "fp32" and facts["model_fingerprint"] == head16_store.fingerprint(MODEL)
    assert weight_bytes_per_token(fp32 / "model.onnx") > weight_bytes_per_token(int4 / "model.onnx")  # fp32 weights, not int4

    with pytest.raises(WorkbenchError, match="pick one of int4, fp32"):
        genai.ensure_graph(head16_store, MODEL, precision="int8")


def test_quantized_benchmark_judges_our_loop_against_genais_on_the_same_fp32_graph(head16_store, model, capsys):
    import dataclasses
    import importlib.util

    from workbench.latency.harness import BenchConfig, make_backends, run_benchmark

    spec = importlib.util.spec_from_file_location("quantized_bench", ROOT / "benchmarks" / "quantized.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    quick = BenchConfig(prompt_lengths=(8,), new_tokens=4, decode_prompt_length=16, warmup=1, min_repeats=2,
                        min_time_s=0.0, max_repeats=2, parity_steps=8, threads=1)
    backends, failures = make_backends(model, ["torch", ORT_GQA, ORT_GENAI_FP32], head16_store, threads=1)
    assert not failures, failures
    try:
        result = run_benchmark(model, backends, quick)
    finally:
        backends[ORT_GENAI_FP32].close()
    rows = bench.targets(result)
    loop = next(r for r in rows if r["name"].startswith(f"our loop ({ORT_GQA}) / onnxruntime-genai's loop"))
    ratio = result.result(ORT_GENAI_FP32).decode.p50 / result.result(ORT_GQA).decode.p50
    assert loop["value"] == round(ratio, 3) and loop["met"] == (ratio >= bench.LOOP_GOAL) and loop["goal"] == "≥ 0.95"
    assert f"({ORT_GENAI_FP32})" in loop["name"] and "same builder fp32 graph" in loop["name"]
    assert "rotary before GQA" in loop["name"] and "context 16" in loop["name"]
    exact = {r["name"]: r["met"] for r in rows if r["name"].startswith(ORT_GENAI_FP32)}
    assert exact == {f"{ORT_GENAI_FP32} greedy tokens equal to torch": True,
                     f"{ORT_GENAI_FP32} max |Δlogits| within the fp32 bar": True}
    assert bench.informational(result) == []  # the int4 pair (different weights) did not run
    assert any(line.startswith("MET " if loop["met"] else "MISS ") and "same builder fp32 graph" in line
               for line in capsys.readouterr().out.splitlines())

    without = dataclasses.replace(result, results=[r for r in result.results if r.backend != ORT_GENAI_FP32],
                                  failures={ORT_GENAI_FP32: {"signal": "SIGSEGV"}})
    loop = next(r for r in bench.targets(without) if r["name"].startswith(f"our loop ({ORT_GQA})"))
    assert loop["value"] == "not measured: failed: SIGSEGV" and loop["met"] is False


def test_a_graph_built_for_other_weights_is_built_again(head16_store):
    target = genai.graph_dir(head16_store, MODEL)
    genai.ensure_graph(head16_store, MODEL)
    (target / genai.BUILD_FILE).write_text('{"model_fingerprint": "another entry"}')  # as if reinstalled
    genai.ensure_graph(head16_store, MODEL)
    assert '"another entry"' not in (target / genai.BUILD_FILE).read_text()


FAKE_GENAI = '''
import os, signal

__version__ = "0.18.0-fake"


class Config:
    def __init__(self, path):
        self.path = path

    def overlay(self, text):
        pass


class Model:
    def __init__(self, config):
        self.config = config


class GeneratorParams:
    def __init__(self, model):
        pass

    def set_search_options(self, **options):
        pass


class Generator:
    def __init__(self, model, params):
        pass

    def append_tokens(self, tokens):
        os.kill(os.getpid(), signal.SIGSEGV)  # a native crash at the first evaluation
'''


def test_a_crash_in_genai_is_that_backends_failure_with_its_signal(head16_store, model, tmp_path, monkeypatch):
    from workbench.runtime.generation import generate

    genai.ensure_graph(head16_store, MODEL)  # built with the real builder, before the fake takes over
    package = tmp_path / "site" / "onnxruntime_genai"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_GENAI))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # the child adopts this sys.path
    backend = make_backend(model, ORT_GENAI, store=head16_store, threads=1)
    try:
        assert backend.settings()["onnxruntime_genai"] == "0.18.0-fake"
        with pytest.raises(BackendCrashedError) as caught:
            backend.prefill(np.array([[3, 4]], np.int64))
        err = caught.value
        assert (err.signal, err.phase, err.backend) == ("SIGSEGV", "first prefill", ORT_GENAI)
        assert "onnxruntime-gqa-q4" in str(err)  # the hint: what runs the same kernels safely
        assert backend.dead
    finally:
        backend.close()
    assert len(generate(model, "Once", max_new_tokens=2, stop_at_eos=False).token_ids) == 2  # this process goes on


def test_without_the_package_making_it_says_how_to_add_it(head16_store, monkeypatch):
    from workbench.errors import UnsupportedModelError

    monkeypatch.setattr(genai, "genai_version", lambda: None)
    with pytest.raises(UnsupportedModelError, match=r"pip install -e '\.\[bench\]'"):
        genai.ensure_graph(head16_store, MODEL)
    with pytest.raises(UnsupportedModelError, match=rf"The {ORT_GENAI_FP32} backend needs .*pip install"):
        genai.ensure_graph(head16_store, MODEL, precision="fp32")
