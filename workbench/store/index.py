"""Fetch one pinned file from the Python package index pip is configured with, running nothing.

``pip download`` of an sdist prepares its metadata, which runs the package's build backend (its
``setup.py``) before any hash can be checked. This module instead reads the index's Simple
Repository API (PEP 503 HTML or PEP 691 JSON) for the project, finds the card's exact file name,
downloads just those bytes and checks their sha256; the caller then reads the archive as data.

Where pip looks is where this looks: ``index-url`` (``$PIP_INDEX_URL``, else pip's configuration
as ``pip config list`` reports it, else https://pypi.org/simple), then each ``extra-index-url``,
then each ``find-links`` location (a folder or a page of links). ``http(s)://`` and ``file://``
both work (``urllib``). Contract: writes only ``dest/<filename>``; a file that fails its sha256 is
deleted and ``IntegrityError`` raised; nothing found anywhere is ``SourceUnavailableError``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from packaging.utils import canonicalize_name

from ..common import Progress, quiet
from ..errors import IntegrityError, SourceUnavailableError

DEFAULT_INDEX = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
CHUNK = 1 << 20
TIMEOUT_S = 60


class _Links(HTMLParser):
    """The ``<a href>`` links of a PEP 503 page: (text or file name, absolute URL)."""

    def __init__(self, base: str):
        super().__init__()
        self.base, self.links, self._href = base, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((data.strip(), urljoin(self.base, self._href)))
            self._href = None

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:  # an empty anchor: name it by its URL
            self.links.append(("", urljoin(self.base, self._href)))
            self._href = None


def pip_locations() -> tuple[list[str], list[str]]:
    """(indexes in pip's order, find-links locations) as pip itself is configured."""
    values: dict[str, list[str]] = {"index-url": [], "extra-index-url": [], "find-links": []}
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, check=False)
        lines = proc.stdout.splitlines() if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        lines = []
    for line in lines:
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in values:
            values[option] += value.strip().strip("'\"").split()
    for option, env in (("index-url", "PIP_INDEX_URL"), ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
                        ("find-links", "PIP_FIND_LINKS")):
        if os.environ.get(env):
            values[option] = os.environ[env].split() + values[option]
    index = values["index-url"][:1] or [DEFAULT_INDEX]
    indexes = list(dict.fromkeys(index + values["extra-index-url"]))
    return indexes, list(dict.fromkeys(values["find-links"]))


def _as_url(location: str) -> str:
    return location if urlsplit(location).scheme else Path(location).expanduser().resolve().as_uri()


def _read(url: str, accept: str = ACCEPT) -> tuple[bytes, str, str]:
    """(body, content type, final URL) of ``url``; a folder URL reads its ``index.html``."""
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urlsplit(url).path))
        if path.is_dir():
            if (path / "index.html").is_file():
                path = path / "index.html"
            else:  # a find-links folder: its files are the links
                links = "".join(f'<a href="{p.name}">{p.name}</a>' for p in sorted(path.iterdir()))
                return links.encode(), "text/html", path.as_uri() + "/"
        return path.read_bytes(), "text/html", path.as_uri()
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "gpt-store-workbench"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.read(), response.headers.get("Content-Type", ""), response.geturl()


def project_files(page: bytes, content_type: str, base: str) -> dict[str, tuple[str, str]]:
    """``{filename: (url, sha256 or "")}`` of a Simple API project page (JSON or HTML)."""
    if "json" in content_type:
        data = json.loads(page)
        return {f["filename"]: (urljoin(base, f["url"]), f.get("hashes", {}).get("sha256", ""))
                for f in data.get("files", [])}
    parser = _Links(base)
    parser.feed(page.decode("utf-8", errors="replace"))
    found = {}
    for text, url in parser.links:
        clean, _, fragment = url.partition("#")
        name = urllib.request.url2pathname(clean.rstrip("/").rsplit("/", 1)[-1]) or text
        sha = re.match(r"sha256=([0-9a-f]{64})", fragment)
        found[name] = (clean, sha.group(1) if sha else "")
    return found


def _shown(url: str) -> str:
    """``url`` as it may appear in a message or a log: without a ``user:token@`` part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def find_file(package: str, filename: str) -> list[str]:
    """URLs that serve ``filename`` of ``package``, in pip's order of locations."""
    indexes, find_links = pip_locations()
    urls, tried = [], []
    for index in indexes:
        page_url = _as_url(index).rstrip("/") + f"/{canonicalize_name(package)}/"
        tried.append(_shown(page_url))
        try:
            files = project_files(*_read(page_url))
        except (OSError, ValueError, http.client.HTTPException):
            continue
        if filename in files:
            urls.append(files[filename][0])
    for location in find_links:
        url = _as_url(location)
        tried.append(_shown(url))
        try:
            files = project_files(*_read(url.rstrip("/") + "/" if not url.endswith(".html") else url))
        except (OSError, ValueError, http.client.HTTPException):
            continue
        if filename in files:
            urls.append(files[filename][0])
    if not urls:
        raise SourceUnavailableError(
            f"No package index pip is configured with serves {filename} (looked at {', '.join(tried)}). "
            "Check that the index is reachable (`pip config list`, PIP_INDEX_URL) and install again."
        )
    return urls


def fetch_file(package: str, filename: str, sha256: str, dest: Path, progress: Progress = quiet,
               size_bytes: int = 0) -> Path:
    """Download ``filename`` of ``package`` into ``dest`` and check it against ``sha256``
    (required). Returns the path. Never unpacks, builds or imports anything."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
        raise IntegrityError(f"{filename}: no sha256 is pinned, so its bytes cannot be checked. Pin one in the card.")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / Path(filename).name
    errors = []
    for url in find_file(package, filename):
        progress(0.0, f"downloading {filename}")
        digest, done = hashlib.sha256(), 0
        try:
            if url.startswith("file:"):
                src = open(urllib.request.url2pathname(urlsplit(url).path), "rb")
            else:
                src = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "gpt-store-workbench"}),
                                             timeout=TIMEOUT_S)
            with src, open(out, "wb") as fh:
                while block := src.read(CHUNK):
                    digest.update(block)
                    fh.write(block)
                    done += len(block)
                    if size_bytes:
                        progress(min(done / size_bytes, 1.0), f"downloading {filename}")
        except (OSError, http.client.HTTPException) as err:  # URLError, a gone file:, a cut connection
            out.unlink(missing_ok=True)
            errors.append(f"{_shown(url)}: {err}")
            continue
        if digest.hexdigest() != sha256:
            out.unlink(missing_ok=True)
            raise IntegrityError(
                f"{filename} from {_shown(url)}: sha256 is {digest.hexdigest()[:16]}..., the card pins {sha256[:16]}... "
                "The download is damaged or the index serves other bytes under this name; nothing was read. "
                "Install again; if it repeats, the pinned file is no longer what this index serves."
            )
        progress(1.0, f"{filename} matches its sha256")
        return out
    raise SourceUnavailableError(f"Could not download {filename}: {' | '.join(errors)}. Check the network and install again.")
