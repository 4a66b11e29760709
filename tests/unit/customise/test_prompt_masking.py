"""What the fine-tuning loss counts: every token of plain text; only the response of an Alpaca
record and only the assistant turns of a chat (labels -100 elsewhere), as LLaMA-Factory and
TRL do by default."""
import json

import torch

from workbench.data.formats import read_documents, render
from workbench.finetune.blocks import IGNORE, encode, labelled_stream, pack_labelled
from workbench.testing import tiny_models


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def trained_text(tok, ids, trained):
    return tok.decode([i for i, t in zip(ids, trained, strict=True) if t])


def test_plain_text_counts_every_token():
    tok = tiny_models.build_tokenizer()
    ids, trained, masked = encode(tok, "Once upon a time there was a small model.")
    assert all(trained) and not masked and tok.decode(ids) == "Once upon a time there was a small model."


def test_alpaca_counts_only_the_response(tmp_path):
    tok = tiny_models.build_tokenizer()
    _, docs = read_documents(write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Name the capital of France.", "input": "", "output": "The capital of France is Paris."}]))
    ids, trained, masked = encode(tok, docs[0])
    assert masked and tok.decode(ids) == render(docs[0])  # the model reads prompt and response
    assert trained_text(tok, ids, trained) == "The capital of France is Paris."
    prompt_len = len(tok(docs[0]["prompt"], add_special_tokens=False)["input_ids"])
    assert not any(trained[:prompt_len]) and all(trained[prompt_len:])


def test_chat_counts_only_assistant_turns():
    tok = tiny_models.build_tokenizer(chat=True)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris"}]
    ids, trained, masked = encode(tok, chat)
    assert masked and tok.decode(ids) == render(chat, tok)
    assert trained_text(tok, ids, trained) == "Hello there<|im_end|>\nParis<|im_end|>\n"


def test_labels_are_minus_100_on_prompt_tokens_after_packing(tmp_path):
    tok = tiny_models.build_tokenizer()
    records = [{"instruction": f"Say fact {i}.", "output": tiny_models.CORPUS[i]} for i in range(12)]
    _, docs = read_documents(write_jsonl(tmp_path / "a.jsonl", records))
    ids, labels = pack_labelled(labelled_stream(tok, docs), 16)  # (N, 16) each
    expected_ids, expected_labels = [], []
    for d in docs:  # built by hand: prompt tokens -100, response tokens and the end-of-text kept
        prompt = tok(d["prompt"], add_special_tokens=False)["input_ids"]
        response = tok(d["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        expected_ids += prompt + response
        expected_labels += [IGNORE] * len(prompt) + response
    blocks = [(expected_ids[i:i + 16], expected_labels[i:i + 16]) for i in range(0, len(expected_ids) - 15, 16)]
    kept = [b for b in blocks if any(lab != IGNORE for lab in b[1][1:])]  # all-prompt blocks are dropped
    assert ids.tolist() == [b[0] for b in kept] and labels.tolist() == [b[1] for b in kept]
    assert (labels == IGNORE).any() and (labels != IGNORE).any()


def test_plain_text_blocks_keep_full_sequence_labels():
    tok = tiny_models.build_tokenizer()
    stream = labelled_stream(tok, [" ".join(tiny_models.CORPUS[:6])])
    ids, labels = pack_labelled(stream, 16)
    assert torch.equal(ids, labels)


def test_a_block_with_no_response_is_left_out():
    tok = tiny_models.build_tokenizer()
    long_prompt = {"prompt": " ".join(tiny_models.CORPUS[:6]), "completion": " ".join(tiny_models.CORPUS[:2])}
    stream = labelled_stream(tok, [long_prompt])
    ids, labels = pack_labelled(stream, 8)
    assert len(ids) >= 1 and all((row[1:] != IGNORE).any() for row in labels)
    assert len(ids) < len(stream.ids) // 8  # the all-prompt blocks were dropped


def test_an_alpaca_file_added_to_the_store_keeps_its_prompts_masked(isolated_home, tmp_path):
    from workbench.data.install import add_dataset
    from workbench.data.loading import load_dataset
    from workbench.finetune.blocks import build_blocks
    from workbench.store import Store

    records = [{"instruction": f"Say fact {i}.", "output": tiny_models.CORPUS[i % 3] * 2} for i in range(40)]
    path = write_jsonl(tmp_path / "facts.jsonl", records)
    store = Store()
    add_dataset(store, "facts", path)
    for spec in ("facts", str(path)):  # through the store, and straight from the file
        dataset = load_dataset(store, spec)
        assert dataset.format == "alpaca" and set(dataset.train[0]) == {"prompt", "completion"}
        train, held, facts = build_blocks(tiny_models.build_tokenizer(), dataset, 32, None, 96, 0)
        assert facts["loss_on"] == "responses" and 0.2 < facts["trained_share"] < 0.9
        assert (train.labels == IGNORE).any() and (held.labels == IGNORE).any()
