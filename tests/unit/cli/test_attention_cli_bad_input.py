"""`workbench attention` with bad input: a clear message, exit status 2, nothing installed or written."""
import re

import numpy as np

from workbench.cli import main


def test_empty_text_is_refused_before_anything_is_installed(tiny_store, tmp_path, capsys):
    out = tmp_path / "x.npz"
    for text in ("", "  \n\t "):
        assert main(["attention", "smollm2-135m-instruct", text, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "empty" in err and "workbench attention ID" in err
    assert not tiny_store.is_installed("smollm2-135m-instruct")  # no download was started
    assert not out.exists()


def test_unknown_model_lists_the_known_ones(tiny_store, tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert main(["attention", "no-such-model", "hello", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "tiny-llama" in err and "smollm2-135m-instruct" in err
    assert not out.exists()


def test_cjk_and_emoji_tokens_are_saved_as_read(tiny_store, tmp_path, capsys):
    text = "日本語のテキスト。 Emoji 🙂 and 🎉"
    out, page = tmp_path / "cjk.npz", tmp_path / "cjk.html"
    assert main(["attention", "tiny-llama", text, "--out", str(out), "--html", str(page), "--device", "cpu"]) == 0
    tokens = list(np.load(out)["tokens"])
    assert re.sub("‹[0-9a-f ]+›", "", "".join(tokens)).replace("␣", " ") == text  # ‹f0 9f›: an emoji's first bytes
    assert any("日本" in t for t in tokens) and "🙂" in "".join(tokens) and "🎉" in "".join(tokens)
    html = page.read_text(encoding="utf-8")
    assert "日本" in html and "🎉" in html


def test_injection_text_is_saved_as_text(tiny_store, tmp_path):
    payload = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    out, page = tmp_path / "x.npz", tmp_path / "x.html"
    assert main(["attention", "tiny-gpt2", payload, "--out", str(out), "--html", str(page), "--device", "cpu"]) == 0
    assert "".join(np.load(out)["tokens"]).replace("␣", " ") == payload
    tags = start_tags(page.read_text(encoding="utf-8"))
    assert tags.count("script") == 4 and "img" not in tags  # jQuery, d3, the shim, bertviz: no others


def start_tags(doc: str) -> list[str]:
    """Every element an HTML parser opens (script contents are not parsed as markup)."""
    from html.parser import HTMLParser

    tags = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append(tag)

    Parser().feed(doc)
    return tags
