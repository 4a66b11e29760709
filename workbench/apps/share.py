"""One file to share an app: ``.gptapp`` export and import; an Ollama Modelfile export.

A ``.gptapp`` is a zip of ``app.toml``, ``knowledge/<name>`` and ``manifest.json``
(``{"format": "gptapp", "version": 1, "id", "files": {rel: {"size", "sha256"}}, "tests"?}``;
``tests`` is the app's last recorded ``apps test`` result, shown as stale after import). The index
is not carried: it is rebuilt from the knowledge on import.

``import_app`` checks everything before anything is installed, and refuses with the fix: not a
zip; too many members or too many bytes once uncompressed (a zip bomb); a member with ``..``, an
absolute path, a backslash or a link; a file the manifest does not list, or one it lists that is
missing; a wrong size or sha256; a bad card or knowledge file; an id that is taken (by an app or
a model: ``as_id`` installs it under another). Then it installs through ``catalog.save_app``.
"""
from __future__ import annotations

import hashlib
import json
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath

from ..common import atomic_write_bytes, atomic_write_text
from ..errors import CardError, WorkbenchError
from .card import check_app_id, parse_app_toml
from .catalog import (
    CARD,
    MANIFEST,
    app_dir,
    ensure_installed,
    get_card,
    save_app,
)
from .knowledge import MAX_FILE_BYTES

FORMAT = "gptapp"
MAX_MEMBERS = 200
MAX_TOTAL_BYTES = 64 * 1024 * 1024


class ImportRefused(WorkbenchError):
    """A ``.gptapp`` that is not installed; nothing was written."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_app(store, app_id: str, out: str | Path, format: str = FORMAT) -> tuple[Path, list[str]]:
    """Write the app to ``out`` (written whole or not at all). Returns the path and notes on what
    the format does not carry."""
    folder = ensure_installed(store, app_id)
    card = get_card(store, app_id)
    out = Path(out)
    if format == "modelfile":
        atomic_write_text(out, modelfile(card))
        notes = ["A Modelfile carries the base model, instructions, settings and example turns only."]
        if card.knowledge.files:
            notes.append(f"Not carried: the knowledge ({', '.join(card.knowledge_names)}) and its citations; "
                         "Ollama has no retrieval. Export a .gptapp to keep them.")
        if card.tests or card.starters or card.greeting:
            notes.append("Not carried: the greeting, conversation starters and tests.")
        notes.append(f"FROM names the store id '{card.base_model}': change it to the Ollama model's name.")
        return out, notes
    if format != FORMAT:
        raise WorkbenchError(f"Unknown export format {format!r}; use gptapp or modelfile.")
    rels = [CARD] + list(card.knowledge.files)
    blobs = {rel: (folder / rel).read_bytes() for rel in rels}
    manifest = {"format": FORMAT, "version": 1, "id": card.id,
                "files": {rel: {"size": len(b), "sha256": _sha(b)} for rel, b in blobs.items()}}
    from .evaluation import recorded

    result = recorded(store, card.id)
    if result:
        manifest["tests"] = result
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, data in blobs.items():
            z.writestr(rel, data)
        z.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    atomic_write_bytes(out, buf.getvalue())
    return out, []


def _q(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile(card) -> str:
    """An Ollama Modelfile: FROM, SYSTEM, PARAMETER, MESSAGE."""
    g = card.generation
    lines = [f"# {card.name} ({card.id} {card.version}), exported from GPT Store Workbench", f"FROM {card.base_model}"]
    if card.instructions:
        lines.append(f"SYSTEM {_q(card.instructions)}")
    lines += [f"PARAMETER temperature {g.temperature}", f"PARAMETER top_p {g.top_p}", f"PARAMETER top_k {g.top_k}",
              f"PARAMETER num_predict {g.max_new_tokens}", f"PARAMETER seed {g.seed}"]
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in g.stop]
    for ex in card.examples:
        lines += [f"MESSAGE user {_q(ex.user)}", f"MESSAGE assistant {_q(ex.assistant)}"]
    return "\n".join(lines) + "\n"


def _refuse(file: Path, why: str) -> ImportRefused:
    return ImportRefused(f"{file.name} was not imported: {why} Nothing was installed.")


def read_package(file: str | Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and ``{rel: bytes}`` of a ``.gptapp``, every check of the module docstring done."""
    file = Path(file)
    if not file.is_file():
        raise _refuse(file, "there is no such file; check the path.")
    if not zipfile.is_zipfile(file):
        raise _refuse(file, "it is not a zip file (a .gptapp is one); export the app again with `workbench apps export`.")
    try:
        with zipfile.ZipFile(file) as z:
            infos = z.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _refuse(file, f"it holds {len(infos)} files; an app holds at most {MAX_MEMBERS}.")
            if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
                raise _refuse(file, f"it unpacks to more than {MAX_TOTAL_BYTES // 2**20} MB, more than an app may hold.")
            blobs: dict[str, bytes] = {}
            for info in infos:
                name = info.filename
                mode = info.external_attr >> 16
                parts = PurePosixPath(name).parts
                if ("\\" in name or name.startswith("/") or ".." in parts or (parts and ":" in parts[0])
                        or not parts):
                    raise _refuse(file, f"it holds the path {name!r}, which points outside the app.")
                if stat.S_ISLNK(mode):
                    raise _refuse(file, f"{name!r} is a link; an app holds plain files only.")
                if info.is_dir():
                    continue
                if info.file_size > MAX_FILE_BYTES + 4096:
                    raise _refuse(file, f"{name!r} is larger than a knowledge file may be.")
                with z.open(info) as fh:
                    data = fh.read(MAX_FILE_BYTES + 4097)
                if len(data) != info.file_size:
                    raise _refuse(file, f"{name!r} does not unpack to the size the zip states.")
                blobs[name] = data
    except zipfile.BadZipFile as err:
        raise _refuse(file, f"the zip is damaged ({err}); export it again.") from err
    if MANIFEST not in blobs:
        raise _refuse(file, "it has no manifest.json; export it again with `workbench apps export`.")
    try:
        manifest = json.loads(blobs.pop(MANIFEST))
        files = manifest["files"]
        assert manifest.get("format") == FORMAT and isinstance(files, dict)
    except (ValueError, KeyError, AssertionError, TypeError) as err:
        raise _refuse(file, "its manifest.json is not a .gptapp manifest.") from err
    for rel, meta in files.items():
        if rel not in blobs:
            raise _refuse(file, f"{rel} is listed in its manifest but missing from the zip.")
        data = blobs[rel]
        if not isinstance(meta, dict) or len(data) != meta.get("size") or _sha(data) != meta.get("sha256"):
            raise _refuse(file, f"{rel} does not match its sha256 in the manifest: the file was altered or damaged.")
    extra = sorted(set(blobs) - set(files))
    if extra:
        raise _refuse(file, f"it holds files its manifest does not list ({', '.join(extra)}).")
    if CARD not in blobs:
        raise _refuse(file, "it has no app.toml.")
    return manifest, blobs


def import_app(store, file: str | Path, as_id: str | None = None) -> Path:
    """Check ``file`` (see the module docstring), then install it; returns the app's folder."""
    file = Path(file)
    manifest, blobs = read_package(file)
    try:
        card = parse_app_toml(blobs[CARD].decode("utf-8"), f"{file.name}:app.toml")
    except (UnicodeDecodeError, CardError) as err:
        raise _refuse(file, f"its card is not valid ({err}).") from err
    if set(blobs) - {CARD} != set(card.knowledge.files):
        raise _refuse(file, "its knowledge files differ from those its card lists.")
    if as_id:
        card = card.with_changes(id=check_app_id(as_id))
    taken = "an app" if (app_dir(store, card.id) / MANIFEST).is_file() else (
        "a model" if store.catalog.resolve(card.id) is not None else "")
    if taken:
        raise _refuse(file, f"the id '{card.id}' is already {taken}'s in this store; import it under another "
                            f"id with `workbench apps import {file} --as NEW_ID`.")
    origin = {"imported_from": file.name, "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "exported_id": manifest.get("id")}
    with store.staging(f"import-{card.id}") as tmp:
        paths = []
        for rel in card.knowledge.files:
            path = tmp / PurePosixPath(rel).name
            path.write_bytes(blobs[rel])
            paths.append(path)
        target = save_app(store, card, paths, origin=origin)
    tests = manifest.get("tests")
    if _a_test_record(tests):  # only the shape a store front can show; anything else is dropped
        from .evaluation import record

        record(store, card.id, {**{k: tests[k] for k in _TEST_KEYS if k in tests}, "imported": True})
    return target


_TEST_KEYS = ("passed", "total", "date", "score", "base_model", "base_digest", "app_digest")


def _a_test_record(tests) -> bool:
    """Whether an imported file's ``tests`` is a result as ``evaluation`` records one."""
    return (isinstance(tests, dict) and all(isinstance(tests.get(k), int) and not isinstance(tests.get(k), bool)
                                            for k in ("passed", "total"))
            and 0 <= tests["passed"] <= tests["total"] <= 10_000 and isinstance(tests.get("date"), str))
