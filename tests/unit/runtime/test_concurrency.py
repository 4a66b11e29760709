"""One cached model serving several sessions at once gives each the output it would get alone."""
from concurrent.futures import ThreadPoolExecutor

from workbench.runtime.loading import load_model


def test_parallel_generations_equal_serial_ones(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    jobs = [
        dict(prompt="Once upon a time", seed=s, do_sample=s % 2 == 1, temperature=1.3, max_new_tokens=12,
             stop_at_eos=False)
        for s in range(8)
    ]

    def run(job):
        job = dict(job)
        return model.generate(job.pop("prompt"), **job).token_ids

    alone = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(run, jobs))
    assert together == alone
    assert load_model("tiny-llama", store=tiny_store, device="cpu") is model  # cached, not reloaded
