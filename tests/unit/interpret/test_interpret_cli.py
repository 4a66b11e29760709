"""`workbench lens | arch | attribute | compare`."""
import json

import numpy as np
import torch

from workbench.cli import main


def test_lens_json(tiny_store, tmp_path, capsys, load):
    out = tmp_path / "lens.json"
    code = main(["lens", "tiny-llama", "The capital of France is", "--json", str(out), "--top-k", "3",
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text(encoding="utf-8"))
    T = len(data["tokens"])
    assert len(data["top"]) == 2 and all(len(layer) == T for layer in data["top"])
    assert all(len(pos) == 3 for layer in data["top"] for pos in layer)
    model = load("llama")
    with torch.no_grad():
        probs = torch.softmax(model.module(input_ids=torch.tensor([data["token_ids"]])).logits[0], -1).numpy()
    last = data["top"][-1]  # layer L: the model's own next-token distribution
    np.testing.assert_array_equal([p[0]["id"] for p in last], probs.argmax(-1))
    np.testing.assert_allclose([p[0]["prob"] for p in last], probs.max(-1), atol=1e-6)
    assert "final answer top-1 from here" in capsys.readouterr().out


def test_other_commands(tiny_store, tmp_path, capsys):
    assert main(["arch", "tiny-gemma3", "--json", str(tmp_path / "a.json")]) == 0
    assert "= model.num_parameters()" in capsys.readouterr().out
    assert main(["attribute", "tiny-llama", "The capital of", "--steps", "4"]) == 0
    assert "completeness error" in capsys.readouterr().out
    assert main(["compare", "tiny-llama", "tiny-gpt2", "The capital of"]) == 0
    assert "KL(tiny-llama ‖ tiny-gpt2)" in capsys.readouterr().out


def test_errors_say_how_to_fix(tiny_store, capsys):
    assert main(["lens", "tiny-llama", "  "]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["lens", "tiny-llama", "hi", "--target", "capital of France"]) == 2
    assert "not one" in capsys.readouterr().err
