"""``workbench finetune`` waits for its job and shows progress; ``workbench jobs`` lists it."""
import json

from workbench.cli import main
from workbench.testing import tiny_models


def test_finetune_waits_then_jobs_lists(tiny_store, tmp_path, capsys):
    f = tmp_path / "corpus.jsonl"
    f.write_text("".join(json.dumps({"text": line}) + "\n" for line in tiny_models.CORPUS[:60]))
    code = main(["finetune", "tiny-llama", "--dataset", str(f), "--out", "tiny-cli", "--max-steps", "4",
                 "--seq-length", "32", "--batch-size", "2", "--eval-every", "2", "--ppl-tokens", "128"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "-> model tiny-cli" in out.out and "base perplexity" in out.err and "step 4/4" in out.err
    assert main(["jobs", "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)
    assert job["status"] == "finished" and job["model_id"] == "tiny-cli"
    assert main(["jobs", "stop"]) == 0 and "nothing to stop" in capsys.readouterr().out
    assert main(["finetune", "tiny-llama", "--dataset", str(f), "--out", "tiny-cli"]) == 2
    assert "already in the store" in capsys.readouterr().err
