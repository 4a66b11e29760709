"""The built-in ``workbench-guide`` app's knowledge is the workbench's own README and docs,
copied into ``apps/workbench-guide/knowledge/`` (``docs/x.md`` as ``docs-x.md``) so the app ships
in the wheel. ``python -m workbench.apps.guide`` refreshes the copies and the card's file list
after the docs change; a unit test checks they match."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

GUIDE = "workbench-guide"


def sources(repo: Path) -> dict[str, Path]:
    """``{name in knowledge/: file in the repo}``."""
    out = {"README.md": repo / "README.md"}
    out.update({f"docs-{p.name}": p for p in sorted((repo / "docs").glob("*.md"))})
    return out


def refresh(repo: Path) -> list[str]:
    """Copy the README and docs into the guide's knowledge folder and list them in its card."""
    folder = repo / "apps" / GUIDE
    knowledge = folder / "knowledge"
    wanted = sources(repo)
    for old in knowledge.glob("*"):
        if old.name not in wanted:
            old.unlink()
    for name, path in wanted.items():
        shutil.copyfile(path, knowledge / name)
    card = folder / "app.toml"
    files = "files = [" + ", ".join(f'"knowledge/{n}"' for n in wanted) + "]"
    card.write_text(re.sub(r"(?m)^files = \[.*\]$", files, card.read_text(encoding="utf-8")), encoding="utf-8")
    return list(wanted)


if __name__ == "__main__":
    print("\n".join(refresh(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])))
