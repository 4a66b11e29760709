"""The benchmark: statistics, method, result schema, stored speeds, figures and the CLI."""
import json
import math

import numpy as np
import pytest

from workbench.testing.exports import seed_export
from workbench.latency import harness as bench
from workbench.latency.harness import BenchConfig, Latency, run_benchmark
from workbench.latency.speeds import measured_speeds, record_speeds
from workbench.cli import main
from workbench.errors import InvalidInputError
from workbench.runtime.loading import load_model
from workbench.runtime.backends import make_backend

QUICK = BenchConfig(prompt_lengths=(8, 24), new_tokens=6, decode_prompt_length=16, warmup=1,
                    min_repeats=3, min_time_s=0.0, max_repeats=5)


def test_latency_statistics_match_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    lat = Latency(list(values))
    assert lat.count == 6
    assert lat.p50 == pytest.approx(np.percentile(values, 50))
    assert lat.p90 == pytest.approx(np.percentile(values, 90))
    assert lat.p99 == pytest.approx(np.percentile(values, 99))
    assert lat.mean == pytest.approx(np.mean(values))
    assert lat.stdev == pytest.approx(np.std(values, ddof=1))
    assert lat.stats()["min"] == 1.0 and lat.stats()["max"] == 10.0
    assert math.isnan(Latency().p50) and Latency([3.0]).stdev == 0.0


@pytest.fixture
def llama_backends(tiny_store):
    seed_export(tiny_store, "tiny-llama")
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    return model, {n: make_backend(model, n, store=tiny_store) for n in ("torch", "onnxruntime")}


def test_benchmark_method_and_result(llama_backends):
    model, backends = llama_backends
    seen = []
    result = run_benchmark(model, backends, QUICK, progress=lambda f, m: seen.append((f, m)))
    assert seen[0][1] == "measuring the memory read bandwidth" and seen[-1] == (1.0, "done")
    assert "warming up torch" in [m for _, m in seen]
    assert result.bandwidth_gb_s > 0  # measured in the same run
    for r in result.results:
        assert set(r.prefill) == {8, 24}
        assert all(3 <= lat.count <= 5 for lat in r.prefill.values())  # min repeats .. max repeats
        runs = r.e2e.count
        assert 3 <= runs <= 5 and r.ttft.count == runs
        assert r.decode.count == runs * (QUICK.new_tokens - 1)  # one value per cached step
        assert len(r.tokens) == QUICK.new_tokens  # min new tokens = max new tokens
        assert r.tokens_per_s == pytest.approx(QUICK.new_tokens / (r.e2e.p50 / 1000))
        assert r.peak_rss_mb > 10 and r.gpu_peak_mb is None
        assert all(v > 0 for v in r.decode.values)
    assert result.result("torch").tokens == result.result("onnxruntime").tokens  # greedy, same prompt
    assert result.parity["onnxruntime"].passed
    assert result.env["cores"] >= 1 and "onnxruntime" in result.env["versions"]
    assert result.result("onnxruntime").settings["threads"] >= 1


def test_result_json_has_the_issue_schema(llama_backends):
    model, backends = llama_backends
    data = json.loads(json.dumps(run_benchmark(model, backends, QUICK).to_json()))
    assert {"model", "env", "parity", "results"} <= set(data)
    assert set(data["parity"]["onnxruntime"]) >= {"max_abs_diff", "greedy_match", "greedy_total"}
    row = data["results"][1]
    assert row["backend"] == "onnxruntime" and row["device"] == "cpu"
    assert set(row["prefill_ms"]) == {"8", "24"} and set(row["prefill_ms"]["8"]) == {"p50", "p90", "p99"}
    assert set(row["decode_ms"]) == {"p50", "p90", "p99"}
    for key in ("ttft_ms", "tokens_per_s", "peak_rss_mb"):
        assert isinstance(row[key], float)


def test_frame_and_summary_are_numbers(llama_backends):
    model, backends = llama_backends
    result = run_benchmark(model, backends, QUICK, parity=False)
    frame = result.frame()
    assert set(frame["metric"]) == {"prefill", "decode", "ttft", "e2e"}
    assert frame["p50_ms"].dtype == float and (frame["p50_ms"] > 0).all()
    assert sorted(frame.loc[frame.metric == "prefill", "prompt_length"].unique()) == [8, 24]
    summary = result.summary().set_index("backend")
    assert summary.loc["torch", "speedup"] == 1.0
    assert summary.loc["onnxruntime", "speedup"] == pytest.approx(
        result.result("torch").decode.p50 / result.result("onnxruntime").decode.p50)
    assert summary.loc["onnxruntime", "parity"] == "not checked"


def test_config_is_checked_against_the_context(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu")
    with pytest.raises(InvalidInputError, match="exceeds this model's context of 128"):
        run_benchmark(model, {}, BenchConfig(prompt_lengths=(120,), new_tokens=16))
    with pytest.raises(InvalidInputError, match="at least 2"):
        run_benchmark(model, {}, BenchConfig(prompt_lengths=(8,), new_tokens=1, decode_prompt_length=8))


def test_bench_prompt_has_exactly_the_length(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu")
    for n in (1, 16, 100):
        ids = bench.bench_prompt(model.tokenizer, n)
        assert len(ids) == n and ids == bench.bench_prompt(model.tokenizer, n)


def test_measured_speeds_are_stored_per_backend(llama_backends, tiny_store):
    model, backends = llama_backends
    assert measured_speeds(tiny_store, "tiny-llama") == {}
    result = run_benchmark(model, backends, QUICK, parity=False)
    path = record_speeds(tiny_store, result)
    speeds = measured_speeds(tiny_store, "tiny-llama")
    assert speeds == {"torch": pytest.approx(result.result("torch").tokens_per_s),
                      "onnxruntime": pytest.approx(result.result("onnxruntime").tokens_per_s)}
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".speeds.lock")] == ["speeds.json"]
    assert measured_speeds(tiny_store, "tiny-gpt2") == {}
    path.write_text("{not json")
    assert measured_speeds(tiny_store, "tiny-llama") == {}  # unreadable means nothing measured


def test_figures_and_html_report(llama_backends):
    from workbench.views import latency as plots

    model, backends = llama_backends
    result = run_benchmark(model, backends, QUICK)
    prefill = plots.prefill_figure(result)
    assert [t.name for t in prefill.data] == ["torch", "onnxruntime"]
    assert list(prefill.data[0].x) == [8, 24]
    decode = plots.decode_figure(result)
    assert list(decode.data[0].x) == ["torch", "onnxruntime"]
    assert list(decode.data[0].y) == [r.decode.p50 for r in result.results]
    assert plots.speedup_figure(result).data[0].y[0] == 1.0
    html = plots.html_report(result)
    assert "PASS (fp32)" in html and "tiny-llama" in html
    # plotly.js is inlined (the bundle only names a CDN as the default for geo maps): opens offline
    assert 'src="http' not in html and "src='http" not in html
    assert len(html) > 3_000_000
    assert html.count("plotly-graph-div") >= 3


def test_cli_export_prints_the_folder(tiny_store, capsys):
    export = seed_export(tiny_store, "tiny-llama")
    assert main(["export", "tiny-llama"]) == 0
    assert capsys.readouterr().out.strip() == str(export.directory)


def test_cli_bench_writes_the_json(tiny_store, tmp_path, capsys):
    seed_export(tiny_store, "tiny-llama")
    out = tmp_path / "bench.json"
    code = main(["bench", "tiny-llama", "--backends", "torch,onnxruntime", "--prompt-lengths", "8,16",
                 "--new-tokens", "4", "--repeats", "1", "--min-time", "0", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "onnxruntime" in table and "PASS (fp32)" in table
    data = json.loads(out.read_text())
    assert data["model"] == "tiny-llama"
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime"]
    assert set(data["results"][0]["prefill_ms"]) == {"8", "16"}
    assert data["parity"]["onnxruntime"]["greedy_total"] == 4
    assert set(measured_speeds(tiny_store, "tiny-llama")) == {"torch", "onnxruntime"}


def test_cli_bench_rejects_unknown_backends(tiny_store, capsys):
    assert main(["bench", "tiny-llama", "--backends", "torch,tensorrt"]) == 2
    assert "Unknown backends ['tensorrt']" in capsys.readouterr().err
    assert main(["bench", "tiny-llama", "--prompt-lengths", "16,abc"]) == 2
    assert "comma-separated" in capsys.readouterr().err
