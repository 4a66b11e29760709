"""`workbench attention ID TEXT --out FILE.npz --html FILE.html`."""
import numpy as np

from workbench.cli import main


def test_cli_writes_npz_and_offline_html(tiny_store, tmp_path, capsys):
    out, page = tmp_path / "a.npz", tmp_path / "a.html"
    code = main(["attention", "tiny-llama", "The capital of France", "--out", str(out), "--html", str(page),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    data = np.load(out)
    w = data["weights"]
    assert w.dtype == np.float32 and w.ndim == 4 and w.shape[:2] == (2, 4)
    assert w.shape[2] == w.shape[3] == len(data["tokens"])
    np.testing.assert_allclose(w.sum(-1), 1, atol=1e-5)
    assert "␣capital" in list(data["tokens"])
    html = page.read_text(encoding="utf-8")
    assert "cdnjs" not in html and "capital" in html
    assert "weights float32 [2 layers, 4 heads" in capsys.readouterr().out


def test_cli_errors_say_how_to_fix(tiny_store, tmp_path, capsys):
    assert main(["attention", "tiny-llama", "  ", "--out", str(tmp_path / "x.npz")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["attention", "tiny-llama", "hi", "--out", str(tmp_path / "x.npz"), "--layers", "9"]) == 2
    assert "layers 0–1" in capsys.readouterr().err
