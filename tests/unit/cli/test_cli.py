"""The `workbench` command line: JSON shapes and error exits."""
import json

from workbench.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_store_list_json(tiny_store, capsys):
    code, out, _ = run(capsys, "store", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["tiny-gpt2"]["status"] == "installed" and rows["tiny-gpt2"]["size_bytes"] > 0
    assert rows["smollm2-135m-instruct"]["status"] == "available"
    assert rows["gpt2"]["status"] == "needs-network"
    for row in rows.values():
        assert {"id", "name", "parameters", "status", "size_bytes", "sources"} <= set(row)


def test_generate_json(tiny_store, capsys):
    code, out, _ = run(capsys, "generate", "tiny-gpt2", "Once upon", "--max-new-tokens", "5", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"text", "tokens", "ttft_ms", "tokens_per_s"} <= set(data)
    assert data["tokens"] and {"token", "id", "prob", "top"} <= set(data["tokens"][0])
    assert {"token", "prob"} <= set(data["tokens"][0]["top"][0])


def test_generate_sampling_and_streaming(tiny_store, capsys):
    code, out, err = run(capsys, "generate", "tiny-llama", "Hi", "--chat", "--sample", "--temperature", "0.9",
                         "--top-k", "20", "--top-p", "0.9", "--seed", "3", "--max-new-tokens", "4")
    assert code == 0 and "tok/s" in err


def test_errors_exit_2_with_the_fix(tiny_store, capsys):
    code, _, err = run(capsys, "generate", "no-such-model", "hi")
    assert code == 2 and "Models in the store" in err
    code, _, err = run(capsys, "generate", "tiny-gpt2", "hi", "--max-new-tokens", "0")
    assert code == 2 and "at least 1" in err
    code, _, err = run(capsys, "store", "path", "smollm2-135m-instruct")
    assert code == 2 and "workbench store install" in err


def test_store_path_verify_remove(tiny_store, capsys):
    code, out, _ = run(capsys, "store", "path", "tiny-gemma3")
    assert code == 0 and out.strip().endswith("tiny-gemma3")
    code, out, _ = run(capsys, "store", "verify", "tiny-gemma3")
    assert code == 0 and "ok" in out
    code, out, _ = run(capsys, "store", "remove", "tiny-gemma3")
    assert code == 0 and not tiny_store.is_installed("tiny-gemma3")


def test_store_add_from_a_folder(isolated_home, tiny_model_dirs, capsys):
    code, out, _ = run(capsys, "store", "add", "folder-model", "--dir", str(tiny_model_dirs["gpt2"]))
    assert code == 0 and "added folder-model" in out
