"""Strided sliding-window perplexity: every token scored once, equal to the loss computed by
hand, the same on ONNX Runtime as on torch (KL divergence ~0), stored in the store, and the CLI."""
import json
import math

import pytest
import torch

from workbench.cli import main
from workbench.data.loading import load_dataset
from workbench.errors import InvalidInputError
from workbench.quality.evaluation import eval_token_ids, perplexity, windows
from workbench.quality.results import measured_quality, record_quality
from workbench.runtime import load_model
from workbench.testing import tiny_models
from workbench.testing.exports import seed_export


@pytest.fixture
def text_file(tmp_path):
    f = tmp_path / "held.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:60]))
    return f


@pytest.mark.parametrize("n, window, stride", [(10, 4, 2), (100, 32, 16), (7, 64, 32), (50, 8, 8), (33, 10, 3)])
def test_windows_score_every_token_once_with_context(n, window, stride):
    targets = [t for begin, end, first in windows(n, window, stride) for t in range(first, end)]
    if stride < window:
        assert targets == list(range(1, n))
    else:  # the first token of each window has no context: skipped
        assert targets == [t for t in range(1, n) if t % window]
    for begin, end, first in windows(n, window, stride):
        assert end - begin <= window and first >= begin + 1


def test_one_window_equals_the_models_own_loss(tiny_store, text_file):
    model = load_model("tiny-llama", store=tiny_store)
    data = load_dataset(tiny_store, str(text_file))
    ids = eval_token_ids(model.tokenizer, data.eval, 4096)
    result = perplexity(model, data, window=len(ids), stride=len(ids))
    with torch.no_grad():
        loss = model.module(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert result.tokens == len(ids) - 1
    assert result.perplexity == pytest.approx(math.exp(loss), rel=1e-4)
    strided = perplexity(model, data, window=16, stride=8)
    assert (strided.window, strided.stride, strided.tokens) == (16, 8, len(ids) - 1)
    assert strided.perplexity != result.perplexity  # less context per token
    with pytest.raises(InvalidInputError, match="window"):
        perplexity(model, data, window=1000)


def test_onnxruntime_matches_torch_and_results_are_stored(tiny_store, text_file):
    seed_export(tiny_store, "tiny-llama")
    model = load_model("tiny-llama", store=tiny_store)
    data = load_dataset(tiny_store, str(text_file))
    ref = perplexity(model, data, window=32, stride=16)
    ort = perplexity(model, data, "onnxruntime", window=32, stride=16, store=tiny_store)
    assert ort.perplexity == pytest.approx(ref.perplexity, rel=1e-4)
    assert ort.kld_mean < 1e-6 and ort.top1_agreement == 1.0 and ref.kld_mean is None
    record_quality(tiny_store, ref)
    record_quality(tiny_store, ort)
    assert set(measured_quality(tiny_store, "tiny-llama", data.id)) == {"torch", "onnxruntime"}


def test_cli_eval_writes_json(tiny_store, text_file, tmp_path, capsys):
    out = tmp_path / "ppl.json"
    assert main(["eval", "tiny-llama", "--dataset", str(text_file), "--window", "32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"perplexity", "tokens", "window", "stride"} <= set(data) and data["window"] == 32 and data["stride"] == 16
    assert "perplexity" in capsys.readouterr().out
