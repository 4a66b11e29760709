"""The shipped catalog is data; every card must parse and pin its sources."""
import pytest

from workbench.errors import CardError, UnknownModelError
from workbench.store.catalog import BUILTIN_CARDS, Catalog, parse_card, read_card


def test_every_shipped_card_parses_and_pins_its_files():
    cards = [read_card(p) for p in sorted(BUILTIN_CARDS.glob("*.toml"))]
    assert {c.id for c in cards} >= {"smollm2-135m-instruct", "gemma3-270m", "gpt2", "distilgpt2"}
    assert sum(c.default for c in cards) == 1
    for card in cards:
        assert card.description and card.license and card.parameters > 0
        assert card.layers > 0 and card.heads > 0 and card.context_length > 0
        assert card.capabilities and card.sources
        for source in card.sources:
            if source.kind == "pypi":
                assert len(source.sha256) == 64 and source.size_bytes > 0
                assert all(len(p.sha256) == 64 and p.version[0].isdigit() for p in source.packages)
            if source.kind == "hub":
                assert source.revision and dict(source.files)


def test_default_model_is_smollm2_and_aliases_resolve():
    catalog = Catalog()
    assert catalog.default.id == "smollm2-135m-instruct"
    assert catalog.get("gpt-2").id == "gpt2"
    assert catalog.get("SmolLM2").id == "smollm2-135m-instruct"


def test_unknown_model_lists_the_valid_ids():
    with pytest.raises(UnknownModelError, match="gemma3-270m.*gpt2"):
        Catalog().get("gpt-5")


BASE = {
    "id": "x", "name": "X", "family": "gpt2", "architecture": "GPT2LMHeadModel", "parameters": 1,
    "layers": 1, "heads": 1, "context_length": 8, "license": "MIT", "description": "d",
    "capabilities": ["generate"], "sources": [{"kind": "local-dir", "path": "/tmp"}],
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"id": "Bad Id"}, "lowercase"),
        ({"capabilities": ["fly"]}, "unknown capabilities"),
        ({"sources": []}, "at least one"),
        ({"sources": [{"kind": "ftp"}]}, "not one of"),
        ({"parameters": "many"}, "must be int"),
        ({"sources": [{"kind": "hub", "repo": "a/b", "revision": "main", "files": {"pytorch_model.bin": ""}}]}, "pickle"),
        ({"sources": [{"kind": "pypi", "format": "gguf", "filename": "f", "size_bytes": 1, "sha256": "abc",
                       "packages": [{"name": "p", "version": "1", "member": "m", "sha256": "0" * 64}]}]}, "sha256"),
    ],
)
def test_malformed_cards_are_refused_with_the_fix(change, message):
    with pytest.raises(CardError, match=message):
        parse_card({**BASE, **change})
    data = dict(BASE)
    del data["name"]
    with pytest.raises(CardError, match="missing field 'name'"):
        parse_card(data)
