"""Export -> import round trip, every bad .gptapp refused before anything is installed, the
Modelfile export, the CLI commands, and the workbench guide's copies of the docs."""
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from workbench.apps.card import parse_app_card
from workbench.apps.catalog import app_dir, get_card, save_app
from workbench.apps.guide import sources
from workbench.apps.share import ImportRefused, export_app, import_app
from workbench.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def club(tiny_store, tmp_path):
    kb = tmp_path / "hours.md"
    kb.write_text("# Hours\nOpens at 5:45.\n")
    card = parse_app_card({"id": "club", "base_model": "tiny-llama", "instructions": "<script>alert(1)</script>",
                           "examples": [{"user": "hi", "assistant": "hello"}],
                           "generation": {"max_new_tokens": 3, "stop": ["\n\n"]}})
    save_app(tiny_store, card, [kb])
    return tiny_store


def test_round_trip(club, tmp_path):
    out, notes = export_app(club, "club", tmp_path / "club.gptapp")
    assert not notes
    with zipfile.ZipFile(out) as z:
        assert set(z.namelist()) == {"app.toml", "knowledge/hours.md", "manifest.json"}
    import_app(club, out, as_id="club-2")
    assert get_card(club, "club-2").instructions == "<script>alert(1)</script>"  # kept as text
    assert (app_dir(club, "club-2") / "knowledge" / "hours.md").read_text() == "# Hours\nOpens at 5:45.\n"
    assert json.loads((app_dir(club, "club-2") / "manifest.json").read_text())["origin"]["imported_from"] == "club.gptapp"
    assert club.app("club-2").retrieve("When does it open?")[0][0].heading == "Hours"


def _zip(path, members: dict, manifest=None):
    files = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in members.items()}
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
        if manifest is not False:
            z.writestr("manifest.json", json.dumps(manifest or {"format": "gptapp", "version": 1, "files": files}))
    return path


def test_every_bad_import_is_refused(club, tmp_path):
    good, _ = export_app(club, "club", tmp_path / "good.gptapp")
    with zipfile.ZipFile(good) as z:
        card, kb = z.read("app.toml"), z.read("knowledge/hours.md")
    not_zip = tmp_path / "x.gptapp"
    not_zip.write_text("hello")
    wrong_sha = _zip(tmp_path / "sha.gptapp", {"app.toml": card, "knowledge/hours.md": kb})
    with zipfile.ZipFile(wrong_sha, "a") as z:
        pass
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    manifest["files"]["knowledge/hours.md"]["sha256"] = "0" * 64
    cases = {
        "not a zip": not_zip,
        "no manifest": _zip(tmp_path / "nm.gptapp", {"app.toml": card}, manifest=False),
        "missing from the zip": _zip(tmp_path / "miss.gptapp", {"app.toml": card}, manifest={
            "format": "gptapp", "files": {"app.toml": {"size": len(card), "sha256": hashlib.sha256(card).hexdigest()},
                                          "knowledge/hours.md": {"size": 1, "sha256": "0" * 64}}}),
        "sha256": _zip(tmp_path / "bad.gptapp", {"app.toml": card, "knowledge/hours.md": kb}, manifest=manifest),
        "outside the app": _zip(tmp_path / "dots.gptapp", {"app.toml": card, "../../x": b"x"}),
        "outside the app ": _zip(tmp_path / "abs.gptapp", {"app.toml": card, "/etc/x": b"x"}),
        "already an app": good,
        "knowledge files differ": _zip(tmp_path / "kd.gptapp", {"app.toml": card}),
    }
    link = tmp_path / "link.gptapp"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("knowledge/hours.md")
        info.external_attr = (0o120777) << 16
        z.writestr(info, "/etc/passwd")
    cases["is a link"] = link
    bomb = tmp_path / "bomb.gptapp"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(4):
            z.writestr(f"knowledge/f{i}.txt", b"0" * (17 * 2**20))
    cases["more than"] = bomb
    before = sorted(p.name for p in (club.home / "apps").iterdir())
    for words, path in cases.items():
        with pytest.raises(ImportRefused, match=words.strip()):
            import_app(club, path)
    assert sorted(p.name for p in (club.home / "apps").iterdir()) == before
    assert not list(club.staging_dir.iterdir())
    with pytest.raises(ImportRefused, match="a model's"):
        import_app(club, good, as_id="tiny-gpt2")


def test_modelfile_export_says_what_is_not_carried(club, tmp_path):
    out, notes = export_app(club, "club", tmp_path / "Modelfile", format="modelfile")
    text = out.read_text()
    assert "FROM tiny-llama" in text and 'SYSTEM """<script>alert(1)</script>"""' in text
    assert "PARAMETER num_predict 3" in text and 'PARAMETER stop "\\n\\n"' in text
    assert 'MESSAGE user """hi"""' in text and 'MESSAGE assistant """hello"""' in text
    assert any("knowledge" in n for n in notes)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli(tiny_store, tmp_path, capsys):
    kb = tmp_path / "hours.md"
    kb.write_text("# Hours\nOpens at 5:45.\n")
    code, out, err = run(capsys, "apps", "create", "club", "--model", "tiny-llama", "--knowledge", str(kb),
                         "--starter", "When?", "--max-new-tokens", "3", "--temperature", "0")
    assert code == 0, err
    code, out, _ = run(capsys, "apps", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["club"]["starters"] == ["When?"] and rows["club"]["base_installed"]
    assert "needs model" in rows["harbour-handbook"]["problem"]
    code, out, _ = run(capsys, "apps", "chat", "club", "When does it open?", "--json")
    data = json.loads(out)
    assert code == 0 and {"file", "start", "end", "score", "text", "heading"} <= set(data["citations"][0])
    assert "text" in data
    code, out, _ = run(capsys, "apps", "show", "club")
    assert 'id = "club"' in out
    code, _, _ = run(capsys, "apps", "export", "club", "--out", str(tmp_path / "c.gptapp"))
    assert code == 0
    code, _, err = run(capsys, "apps", "import", str(tmp_path / "c.gptapp"))
    assert code == 2 and "--as NEW_ID" in err
    assert run(capsys, "apps", "import", str(tmp_path / "c.gptapp"), "--as", "club-b")[0] == 0
    assert run(capsys, "apps", "remove", "club-b")[0] == 0 and not app_dir(tiny_store, "club-b").exists()
    code, _, err = run(capsys, "apps", "create", "bad", "--model", "no-such-model")
    assert code == 2 and "workbench store list" in err
    code, _, err = run(capsys, "apps", "test", "club")
    assert code == 2 and "[[tests]]" in err


def test_builtin_apps_are_valid_and_the_guide_matches_the_docs():
    from workbench.apps.catalog import builtin_apps_dir, builtin_ids, read_app_card

    assert {"harbour-handbook", "shakespeare-companion", "workbench-guide"} <= set(builtin_ids())
    for app_id in builtin_ids():
        card = read_app_card(builtin_apps_dir() / app_id / "app.toml")
        assert card.tests and card.id == app_id
        for f in card.knowledge.files:
            assert (builtin_apps_dir() / app_id / f).is_file()
    guide = builtin_apps_dir() / "workbench-guide"
    card = read_app_card(guide / "app.toml")
    wanted = sources(ROOT)
    stale = [n for n, p in wanted.items() if not (guide / "knowledge" / n).is_file()
             or (guide / "knowledge" / n).read_bytes() != p.read_bytes()]
    assert not stale and set(card.knowledge_names) == set(wanted), (
        f"The workbench guide's copies of the docs are out of date ({stale}): run "
        "`.venv/bin/python -m workbench.apps.guide`.")


def test_an_imported_test_record_of_the_wrong_shape_is_dropped(club, tmp_path):
    from workbench.apps import test_status as status_of

    good, _ = export_app(club, "club", tmp_path / "good.gptapp")
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in ("app.toml", "knowledge/hours.md")}
    files = {n: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in members.items()}
    odd = _zip(tmp_path / "odd.gptapp", members, {"format": "gptapp", "version": 1, "files": files, "tests": {}})
    import_app(club, odd, as_id="club-odd")
    assert status_of(club, "club-odd").describe() == "its own tests were never run here"  # no KeyError on the page
    shown = _zip(tmp_path / "shown.gptapp", members, {"format": "gptapp", "version": 1, "files": files,
                                                      "tests": {"passed": 3, "total": 4, "date": "2026-12-01T10:00:00Z"}})
    import_app(club, shown, as_id="club-shown")
    assert status_of(club, "club-shown").describe().startswith("3/4 of its own tests")
