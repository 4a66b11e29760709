"""workbench.views.apps: the form as a card and back, uploads written under safe names, ids."""
import pytest

from workbench.apps.card import parse_app_card
from workbench.errors import CardError
from workbench.views import apps as views


def test_form_round_trips_a_card_and_keeps_what_it_does_not_edit():
    card = parse_app_card({"id": "club", "base_model": "m", "author": "A", "starters": ["a?", "b?"],
                           "generation": {"stop": ["\n\n"], "temperature": 0.5},
                           "tests": [{"question": "q", "answers": ["x"]}]})
    again = views.card_from_form(views.form_values(card), card)
    assert again == card
    with pytest.raises(CardError, match="Pick a base model"):
        views.card_from_form({**views.form_values(card), "base_model": ""})


def test_uploads_are_written_under_flat_names_and_a_clash_is_refused(tmp_path):
    paths = views.write_uploads(tmp_path, [("../../etc/hand book.md", b"# A\n")])
    assert [p.name for p in paths] == ["hand_book.md"] and paths[0].parent == tmp_path
    with pytest.raises(CardError, match="both named"):
        views.write_uploads(tmp_path / "x", [("a b.md", b"1"), ("a_b.md", b"2")])


def test_free_id_skips_apps_and_models(tiny_store):
    assert views.free_id(tiny_store, "tiny-gpt2") == "tiny-gpt2-2"
    assert views.free_id(tiny_store, "harbour-handbook") == "harbour-handbook-2"
    assert views.free_id(tiny_store, "fresh") == "fresh"


def test_markdown_escaping_shows_html_and_script_as_text():
    assert views.md("<script>x</script> **b**") == "\\<script\\>x\\</script\\> \\*\\*b\\*\\*"


def test_stop_strings_with_line_breaks_survive_the_one_a_line_box():
    assert views.stops_from_text(views.stops_text(["\n\n", "User:", 'say "x"'])) == ["\n\n", "User:", 'say "x"']
    with pytest.raises(CardError, match="line break"):
        views.stops_from_text('bad"quote')
