"""How fast integrated gradients converge on a real store model, per baseline and quadrature rule.

For each prompt and baseline, evaluates the path integrand once on a shared set of path points
``α`` (the grid k/64, the midpoints of 27 intervals, Gauss-Legendre nodes for 16 and 32 points,
and whatever the adaptive rule asks for), each point giving the target logit ``f(α)`` and the
per-token scores ``s(α) = (x - x') · ∂f/∂x(x' + α(x - x')) `` from one batched forward and
backward (cached, so rules share points). Every rule is then a weighted sum of those rows:

- ``left`` / ``right`` Riemann, ``trapezoid`` and ``midpoint`` on n equal intervals;
- ``gauss`` Gauss-Legendre with n nodes;
- ``midpoint-27``: what the workbench used before (3, 9, 27 nested midpoints);
- ``adaptive-n``: the workbench's ``integrate`` (trapezoid, worst intervals split), n intervals.

The completeness error of a rule is ``|Σ scores - (f(1) - f(0))| / |f(1) - f(0)|``, with ``f(1)``
and ``f(0)`` from the *same* batched forward as the gradients (and checked against a separate
single-sequence forward, which catches a path that treats the endpoints differently). The local
check ``f(α_k+1) - f(α_k)`` against the trapezoid of ``Σ s`` over each grid interval shows where
the error comes from (a sharp bend near the baseline, or a bug if it is spread evenly).

Prints a table for people and its last line as JSON. One thread by default: on a shared 2-core
machine, two threads can run slower than one.

    .venv/bin/python benchmarks/ig_convergence.py [--model ID] [--baselines zero,pad,mean]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from workbench.interpret.attribution import baseline_embeddings, integrate
from workbench.interpret.parts import input_embeddings, prepare
from workbench.runtime.loading import load_model

PROMPTS = (
    "The capital of France is",
    "Alice gave Bob a book, and later that evening Bob gave the book back to",
    "In 1969, Neil Armstrong and Buzz Aldrin became the first people to walk on the surface of the "
    "Moon, while their colleague Michael Collins stayed in",
    "The committee met on Tuesday to review the budget for the new library. After a long discussion "
    "about the cost of the roof, the size of the reading room and the number of computers, the members "
    "agreed to ask the city for more money. The chair said the vote would take place on",
)
GRID = 64
SIZES = (16, 32, 64)
GAUSS = (16, 32)
ADAPTIVE = (16, 32, 64)


def rules() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (nodes, weights) on [0, 1]."""
    out = {}
    for n in SIZES:
        k = np.arange(n)
        out[f"left-{n}"] = (k / n, np.full(n, 1 / n))
        out[f"right-{n}"] = ((k + 1) / n, np.full(n, 1 / n))
        w = np.full(n + 1, 1 / n)
        w[[0, -1]] /= 2
        out[f"trapezoid-{n}"] = (np.arange(n + 1) / n, w)
        if n < GRID:  # midpoints of n intervals are grid points of 2n
            out[f"midpoint-{n}"] = ((k + 0.5) / n, np.full(n, 1 / n))
    for n in GAUSS:
        x, w = np.polynomial.legendre.leggauss(n)
        out[f"gauss-{n}"] = ((x + 1) / 2, w / 2)
    out["midpoint-27"] = ((np.arange(27) + 0.5) / 27, np.full(27, 1 / 27))
    return out


def study(model, text: str, baseline: str, keep_first: bool, batch: int, adaptive=ADAPTIVE) -> dict:
    prepared = prepare(model, text, None, 512, "the study")
    ids = torch.tensor([prepared.ids])
    with torch.no_grad():
        x = input_embeddings(model.module, ids)[0].float()
        logits = model.module(inputs_embeds=x[None], use_cache=False, logits_to_keep=1).logits[0, -1]
        target = int(logits.argmax())
        f_x_single = float(logits[target])
        base = baseline_embeddings(model, x, baseline)
        if keep_first and len(x) > 1:
            base[0] = x[0]
        f_b_single = float(model.module(inputs_embeds=base[None], use_cache=False, logits_to_keep=1)
                           .logits[0, -1, target])
    table = rules()
    points = np.unique(np.round(np.concatenate([np.arange(GRID + 1) / GRID]
                                               + [nodes for nodes, _ in table.values()]), 12))
    delta = x - base
    cache: dict[float, tuple[float, np.ndarray]] = {}
    clock = [0.0]

    def evaluate(alphas):
        todo = [a for a in np.round(alphas, 12) if float(a) not in cache]
        t = time.perf_counter()
        for a in range(0, len(todo), batch):
            chunk = todo[a:a + batch]
            al = torch.tensor(chunk, dtype=x.dtype)[:, None, None]
            path = (base[None] + al * delta[None]).requires_grad_(True)  # (b, T, hidden)
            out = model.module(inputs_embeds=path, use_cache=False, logits_to_keep=1).logits[:, -1, target]
            (g,) = torch.autograd.grad(out.sum(), path)
            sc = (g * delta[None]).sum(-1).double().numpy()
            for i, c in enumerate(chunk):
                cache[float(c)] = (float(out[i].detach()), sc[i])
        clock[0] += time.perf_counter() - t
        rows = [cache[float(a)] for a in np.round(alphas, 12)]
        return np.array([r[0] for r in rows]), np.stack([r[1] for r in rows])

    evaluate(points)
    expected = cache[1.0][0] - cache[0.0][0]
    errors = {}
    for name, (nodes, weights) in table.items():
        scores = weights @ evaluate(nodes)[1]
        errors[name] = abs(scores.sum() - expected) / abs(expected)
    for n in adaptive:
        errors[f"adaptive-{n}"] = abs(integrate(evaluate, n, 0.0, 1e9).scores.sum() - expected) / abs(expected)
    grid = np.arange(GRID + 1) / GRID
    fg, sg = evaluate(grid)
    sg = sg.sum(-1)
    local = np.abs(np.diff(fg) - (sg[1:] + sg[:-1]) / 2 / GRID)  # per interval, logit units
    fine = integrate(evaluate, 64, 0.0, 1e9).scores
    seconds = clock[0]
    points = np.array(sorted(cache))
    return {
        "tokens": len(x), "baseline": baseline, "keep_first": keep_first,
        "target": model.tokenizer.decode([target]), "f_x": cache[1.0][0], "f_base": cache[0.0][0],
        "endpoint_mismatch": max(abs(cache[1.0][0] - f_x_single), abs(cache[0.0][0] - f_b_single)),
        "errors": errors, "local_first_interval": float(local[0]), "local_rest_max": float(local[1:].max()),
        "local_total": float(local.sum()), "f_grid": [float(v) for v in fg],
        "top_tokens_adaptive64": [model.tokenizer.decode([prepared.ids[i]]) for i in np.argsort(-np.abs(fine))[:3]],
        "points": len(points), "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--baselines", default="zero,pad,mean")
    ap.add_argument("--prompts", default="0,1,2,3", help="indices into PROMPTS")
    ap.add_argument("--no-keep-first", action="store_true", help="also run the zero baseline with the first token moving")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--adaptive", default=",".join(map(str, ADAPTIVE)), help="steps of the adaptive rule to try")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", attn_implementation="eager")
    for p in model.module.parameters():
        p.requires_grad_(False)
    cases = [(int(i), b, True) for i in args.prompts.split(",") for b in args.baselines.split(",")]
    if args.no_keep_first:
        cases += [(int(i), "zero", False) for i in args.prompts.split(",")]
    shown = ("left-16", "left-64", "midpoint-16", "midpoint-27", "midpoint-32", "gauss-16", "gauss-32",
             "trapezoid-16", "trapezoid-32", "trapezoid-64") + tuple(f"adaptive-{n}" for n in args.adaptive.split(","))
    results = []
    print(f"{'T':>3} {'baseline':<10} {'f(x)-f(b)':>9} " + " ".join(f"{c:>13}" for c in shown)
          + "  local[0] rest_max  endpoint  s")
    for i, baseline, keep in cases:
        r = study(model, PROMPTS[i], baseline, keep, args.batch, [int(n) for n in args.adaptive.split(",")])
        results.append(r)
        name = baseline + ("" if keep else "/move1")
        print(f"{r['tokens']:>3} {name:<10} {r['f_x'] - r['f_base']:>9.2f} "
              + " ".join(f"{100 * r['errors'][c]:>12.2f}%" for c in shown)
              + f"  {r['local_first_interval']:.3f} {r['local_rest_max']:.3f} {r['endpoint_mismatch']:.1e}"
              f" {r['seconds']:.0f}", flush=True)
    print(json.dumps({"model": args.model, "results": results}))


if __name__ == "__main__":
    main()
