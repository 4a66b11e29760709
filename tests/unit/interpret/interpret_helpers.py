"""Helpers of the interpret tests (a module of its own: conftest names clash between folders)."""

KINDS = ("gpt2", "llama", "gemma3")


def save_variant(source, out, *, scale: float = 0.0, config: dict | None = None, extra_token: str | None = None,
                 seed: int = 1):
    """Copy a saved tiny model to ``out``: weights + ``scale`` × noise, config fields overridden,
    optionally one more token in the tokenizer (a different vocabulary)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(source)
    for key, value in (config or {}).items():
        setattr(model.config, key, value)
    if scale:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * scale * p.abs().mean())
    if extra_token:
        tok.add_tokens([extra_token])
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
