"""One real LoRA fine-tune of SmolLM2-135M on the shipped Shakespeare corpus (6 steps of 4 x 128
tokens: about 7 minutes on the slow 2-core CPU this was built on, which trains at ~10 tokens/s;
minutes on a common laptop): the held-out perplexity drops, and the new model generates."""
import time

import pytest

pytestmark = pytest.mark.slow


def test_smollm2_learns_shakespeare(real_store):
    from workbench.finetune import FinetuneConfig, events, start_job, wait
    from workbench.runtime import load_model

    out = f"smollm2-bard-test-{int(time.time())}"
    config = FinetuneConfig("smollm2-135m-instruct", "shakespeare", out, max_steps=6, eval_every=3, new_tokens=8)
    job = start_job(real_store, config)
    try:
        final = wait(real_store, job, poll_s=2.0, timeout_s=900)
        assert final.status == "finished", final
        log = events(real_store, job)
        done = next(e for e in log if e["event"] == "finished")
        assert done["perplexity_after"] < done["perplexity_before"] * 0.99, done
        evals = [e["eval_loss"] for e in log if e["event"] == "eval"]
        assert evals[-1] < evals[0]
        real_store.catalog.reload()
        model = load_model(out, store=real_store)
        assert model.generate("To be, or not to be", max_new_tokens=8).text
    finally:
        real_store.catalog.reload()
        if out in real_store.catalog:
            real_store.forget(out)
