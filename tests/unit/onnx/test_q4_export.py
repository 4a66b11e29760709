"""The q4 variants end to end on a tiny Llama installed from its GGUF twin: the GGUF kept in the
store entry (or fetched again), every matrix mapped to its own blocks, logits equal to torch to
fp32 rounding, and the failures a user can meet."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("gguf")

from workbench.errors import ExportError, SourceUnavailableError, UnsupportedModelError, WorkbenchError  # noqa: E402
from workbench.testing.tiny_gguf import build_gguf_twin, hf_folder_converter  # noqa: E402

MODEL = "tiny-gguf"


@pytest.fixture
def gguf_store(isolated_home, tiny_model_dirs, tmp_path, monkeypatch):
    """A store with ``tiny-gguf`` installed from a GGUF file (and ``tiny-llama`` from a folder)."""
    from workbench.runtime import loading
    from workbench.store import Store, convert

    hf = tmp_path / "twin"
    shutil.copytree(tiny_model_dirs["llama"], hf)
    gguf_path = build_gguf_twin(hf, tmp_path / "tiny.gguf")
    monkeypatch.setattr(convert, "gguf_to_hf", hf_folder_converter(hf))
    store = Store(isolated_home)
    store.add(MODEL, gguf=gguf_path, name="Tiny GGUF Llama")
    store.add("tiny-llama", local_dir=tiny_model_dirs["llama"])
    store.gguf_source = gguf_path  # for the tests below
    yield store
    loading.unload()


def test_the_gguf_is_kept_in_the_entry_and_fetched_again_when_it_goes(gguf_store):
    store = gguf_store
    path = store.gguf_file(MODEL)
    assert path.parent == store.path(MODEL)
    manifest = store.manifest(MODEL)
    assert manifest["gguf"]["file"] == path.name and path.name not in manifest["files"]
    path.unlink()
    assert store.entry(MODEL).status == "installed"  # a missing GGUF does not damage the entry
    again = store.gguf_file(MODEL)
    assert again.is_file() and store.verify(MODEL).ok
    # altered: detected by sha256 and replaced by a good copy
    data = bytearray(again.read_bytes())
    data[-1] ^= 0xFF
    again.write_bytes(bytes(data))
    assert not store.verify(MODEL).ok
    fixed = store.gguf_file(MODEL)
    assert store.verify(MODEL).ok and fixed.read_bytes() == store.gguf_source.read_bytes()


def test_a_gguf_that_changed_at_its_source_is_refused(gguf_store):
    store = gguf_store
    store.gguf_file(MODEL).unlink()
    store.gguf_source.write_bytes(store.gguf_source.read_bytes()[:-1] + b"\0")
    with pytest.raises(WorkbenchError, match="sha256"):
        store.gguf_file(MODEL)
    assert not list(store.staging_dir.iterdir())  # nothing half-written left behind
    store.gguf_source.unlink()
    with pytest.raises(SourceUnavailableError):
        store.gguf_file(MODEL)


def test_models_not_installed_from_a_gguf_have_no_q4_variants(gguf_store):
    from workbench.onnx import export_model
    from workbench.runtime.backends import available_backends

    store = gguf_store
    with pytest.raises(UnsupportedModelError, match="not from a GGUF"):
        export_model(store, "tiny-llama", "q4")
    assert "onnxruntime-q4" not in available_backends(store.card("tiny-llama"))
    assert {"onnxruntime-q4", "onnxruntime-q4a8", "llamacpp"} <= set(available_backends(store.card(MODEL)))


def test_q4_maps_every_matrix_and_matches_torch_to_fp32_rounding(gguf_store, monkeypatch):
    from workbench.latency.parity import check_parity
    from workbench.onnx import export_model
    from workbench.onnx.spec import EXPORT_MANIFEST, WIDE_CODES_ENV, weight_bytes_per_token
    from workbench.runtime.backends import make_backend
    from workbench.runtime.loading import load_model

    store = gguf_store
    monkeypatch.setenv(WIDE_CODES_ENV, "halves")  # every weight in blocks, 5-8-bit codes as two 4-bit halves
    q4 = export_model(store, MODEL, "q4")
    manifest = json.loads((q4.directory / EXPORT_MANIFEST).read_text())
    assert manifest["fp32_left"] == [] and manifest["unused_gguf"] == []
    forms = {(row["gguf_type"], row["onnx_form"]) for row in manifest["mapping"]}
    assert ("Q8_0", "GatherBlockQuantized 8-bit") in forms  # the tied embedding
    assert ("Q4_1", "MatMulNBits 4-bit + block offsets, block 32") in forms
    assert all(form.startswith(("MatMulNBits", "GatherBlockQuantized")) for _, form in forms)
    fp32 = export_model(store, MODEL, "fp32")
    assert weight_bytes_per_token(q4.onnx_path) < weight_bytes_per_token(fp32.onnx_path) / 2
    # zero points are left out where every block's is the op's default (8): the faster kernels
    import onnx

    inputs = [len(n.input) for n in onnx.load(q4.onnx_path, load_external_data=False).graph.node
              if n.op_type == "MatMulNBits"]
    assert 3 in inputs and 4 in inputs  # the tiny twin has both kinds of tensor

    model = load_model(MODEL, store=store)
    backend = make_backend(model, "onnxruntime-q4", store=store)
    report = check_parity(model, backend, "The capital of France is", steps=12)
    assert report.variant == "q4" and report.passed, report.verdict
    assert report.greedy_match == report.greedy_total

    q4a8 = make_backend(model, "onnxruntime-q4a8", store=store)
    drift = check_parity(model, q4a8, "The capital of France is", steps=12)
    assert drift.variant == "q4a8" and not drift.threshold.judge_logits  # judged on tokens, drift shown
    assert drift.max_abs_diff > 0
    # with int8 activations the 8-bit codes (the Q8_0 LM head) go in as 8-bit, not as two halves
    q4a8_forms = {row["onnx_form"] for row in json.loads((q4a8.export.directory / EXPORT_MANIFEST).read_text())["mapping"]}
    assert any(f.startswith("MatMulNBits 8-bit") for f in q4a8_forms), q4a8_forms
    assert not any("2 x 4-bit" in f for f in q4a8_forms)

    # another GGUF with the same shapes but other values (each matrix's scales doubled),
    # recorded as the entry's own: no weight matches, the export is refused, the good one stays
    path = store.gguf_file(MODEL)
    shutil.copyfile(_rescaled(path, store.home), path)
    manifest = store.manifest(MODEL)
    from workbench.store.sources import sha256_file

    manifest["gguf"]["sha256"] = manifest["source"]["sha256"] = sha256_file(path)
    (store.path(MODEL) / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="not the file these weights were converted from"):
        export_model(store, MODEL, "q4", force=True)
    assert (q4.directory / EXPORT_MANIFEST).is_file()
    assert not list(store.staging_dir.iterdir())


def _rescaled(gguf_path, folder):
    """A GGUF like ``gguf_path`` with every matrix's scales doubled."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(gguf_path))
    out = folder / "rescaled.gguf"
    writer = gguf.GGUFWriter(str(out), "llama")
    for t in reader.tensors:
        data = np.array(t.data)
        if t.tensor_type.name != "F32":
            qtype = t.tensor_type
            w = gguf.quants.dequantize(data, qtype) * 2
            data = gguf.quants.quantize(w.astype(np.float32), qtype)
            writer.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_llamacpp_missing_says_how_to_add_it(gguf_store, monkeypatch):
    from workbench.runtime.backends import llamacpp, make_backend
    from workbench.runtime.loading import load_model

    # patch the name the backend module looks up (patching the package first would leak into
    # that module's import and outlive the test)
    monkeypatch.setattr(llamacpp, "llamacpp_installed", lambda: False)
    model = load_model(MODEL, store=gguf_store)
    with pytest.raises(WorkbenchError, match="llama-cpp-python"):
        make_backend(model, "llamacpp", store=gguf_store)
    plain = load_model("tiny-llama", store=gguf_store)
    with pytest.raises(WorkbenchError, match="GGUF"):
        make_backend(plain, "llamacpp", store=gguf_store)


@pytest.mark.parametrize("mode", ["measure", "fp32"])
def test_q4_keeps_wide_codes_in_fp32_where_that_is_faster_and_says_why(gguf_store, monkeypatch, mode):
    """With fp32 activations a weight with 5-8-bit codes (the tiny twin's Q8_0 LM head) goes in as
    two 4-bit halves or stays fp32, whichever kernel is faster on this machine (timed at export,
    or forced): exact either way, the answer and its timings kept in export.json."""
    from workbench.latency.parity import check_parity
    from workbench.onnx import export_model
    from workbench.onnx.kernels import FP32_MARGIN
    from workbench.onnx.spec import EXPORT_MANIFEST, WIDE_CODES_ENV
    from workbench.runtime.backends import make_backend
    from workbench.runtime.loading import load_model

    store = gguf_store
    monkeypatch.setenv(WIDE_CODES_ENV, mode)
    q4 = export_model(store, MODEL, "q4")
    manifest = json.loads((q4.directory / EXPORT_MANIFEST).read_text())
    assert manifest["wide_codes"] == mode
    choices = manifest["kernel_choices"]
    assert choices, "the Q8_0 LM head was not considered"
    forms = {row["onnx_form"] for row in manifest["mapping"]}
    for choice in choices.values():
        if mode == "measure":
            assert choice["fp32_ms"] > 0 and choice["halves_ms"] > 0
            assert choice["fp32"] == (choice["fp32_ms"] < FP32_MARGIN * choice["halves_ms"])  # fp32 holds more bytes
        else:
            assert choice["fp32"] and choice["chosen_by"] == f"{WIDE_CODES_ENV}=fp32"
    kept = any(c["fp32"] for c in choices.values())
    assert any(f.startswith("fp32 (5-8-bit codes") for f in forms) == kept
    assert any("2 x 4-bit" in f for f in forms) == (not all(c["fp32"] for c in choices.values()))
    assert "GatherBlockQuantized 8-bit" in forms  # the embedding stays in blocks: a gather reads one row
    model = load_model(MODEL, store=store)
    report = check_parity(model, make_backend(model, "onnxruntime-q4", store=store), "The capital of France is", steps=12)
    assert report.passed and report.greedy_match == report.greedy_total, report.verdict


def test_a_bad_wide_codes_setting_is_refused_with_the_choices(gguf_store, monkeypatch):
    from workbench.onnx import export_model
    from workbench.onnx.cache import export_dir
    from workbench.onnx.spec import WIDE_CODES_ENV

    monkeypatch.setenv(WIDE_CODES_ENV, "fastest")
    with pytest.raises(ExportError, match="measure .*fp32 or halves"):
        export_model(gguf_store, MODEL, "q4")
    assert not list(gguf_store.staging_dir.iterdir())
    assert not export_dir(gguf_store, MODEL, "fused").exists()  # refused before any export was made


def test_an_export_made_with_another_wide_codes_setting_is_made_again(gguf_store, monkeypatch):
    from workbench.onnx import cached_export, export_model
    from workbench.onnx.spec import WIDE_CODES_ENV

    monkeypatch.setenv(WIDE_CODES_ENV, "halves")
    export_model(gguf_store, MODEL, "q4")
    assert cached_export(gguf_store, MODEL, "q4") is not None
    monkeypatch.setenv(WIDE_CODES_ENV, "fp32")
    assert cached_export(gguf_store, MODEL, "q4") is None  # stale for this setting
    again = export_model(gguf_store, MODEL, "q4")
    assert json.loads((again.directory / "export.json").read_text())["wide_codes"] == "fp32"
    monkeypatch.delenv(WIDE_CODES_ENV)
    assert cached_export(gguf_store, MODEL, "q4") is not None  # unset: any setting's export serves
