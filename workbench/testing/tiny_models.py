"""Tiny causal LMs built from a config in the test itself: no hub, no downloads.

Each is saved with ``save_pretrained`` (safetensors) plus a byte-level BPE tokenizer trained on a
few sentences, so the store's local-dir source, loading and every compute path run for real in
well under a second per model. The Llama one has a chat template.
"""
from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The capital of France is Paris. Once upon a time there was a small model.",
    "Attention is all you need. The quick brown fox jumps over the lazy dog.",
    "日本語のテキスト。 Emoji 🙂 and <b>tags</b> too.",
] * 40

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(chat: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>" if chat else "<|endoftext|>",
        bos_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build(kind: str, out: Path) -> Path:
    """Save a tiny ``gpt2`` | ``llama`` | ``gemma3`` model and tokenizer into ``out``."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    tok = build_tokenizer(chat=kind == "llama")
    vocab = len(tok)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        ))
    elif kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
        ))
    elif kind == "gemma3":
        model = Gemma3ForCausalLM(Gemma3TextConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
            sliding_window=4, layer_types=["sliding_attention", "full_attention"],
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.bos_token_id,
        ))
    else:
        raise ValueError(kind)
    # Scale the random weights up so the tiny models have peaked, non-uniform attention.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name or "attn" in name:
                p.mul_(8.0)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build_long_llama(out: Path) -> Path:
    """A tiny Llama that reads 4,096 tokens (the others stop at 128), for long-text tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = build_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    ))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
