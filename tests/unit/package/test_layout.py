"""The package's shape: light imports, no import cycles, the store apart from the runtime, and
a wheel that is complete on its own (cards inside, the exporter's child process runs from it; the
wheel itself is built in conftest.py)."""
from __future__ import annotations

import ast
import re
import json
import os
import subprocess
import sys
from pathlib import Path


from workbench.testing import ROOT

PACKAGE = ROOT / "workbench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_edges() -> dict[str, set[str]]:
    """Module -> workbench modules it imports when it is imported (top level, not inside
    functions or ``if TYPE_CHECKING``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in tree.body:  # top level only
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)) else ():
                if isinstance(sub, ast.ImportFrom):
                    if sub.level:
                        base = package.rsplit(".", sub.level - 1)[0] if sub.level > 1 else package
                        target = f"{base}.{sub.module}" if sub.module else base
                    else:
                        target = sub.module or ""
                    for alias in sub.names:
                        candidate = f"{target}.{alias.name}"
                        found.add(candidate if candidate in modules else target)
                elif isinstance(sub, ast.Import):
                    found.update(a.name for a in sub.names)
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def test_no_import_cycles_and_the_store_stands_apart():
    edges = _import_time_edges()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    for name, targets in edges.items():
        if name.startswith("workbench.store"):
            assert not {t for t in targets if t.startswith("workbench.runtime")}, name
    # the leaves import nothing of the package but each other
    assert edges["workbench.common"] == set() and edges["workbench.errors"] == set()


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("workbench")):
                offenders += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders


def test_store_views_and_speeds_import_without_torch_or_onnxruntime():
    code = (
        "import sys, workbench\n"
        "from workbench import Store\n"
        "import workbench.views.attention, workbench.views.generation, workbench.views.latency, workbench.views.bertviz\n"
        "from workbench.latency.speeds import measured_speeds\n"
        "from workbench.runtime.backends import available_backends\n"
        "import workbench.onnx, workbench.cli\n"
        "from workbench.data.install import list_datasets; from workbench.data.loading import load_dataset\n"
        "from workbench.finetune.jobs import list_jobs; from workbench.quality.results import measured_quality\n"
        "import workbench.views.finetune; workbench.cli.build_parser()\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_top_level_names_are_lazy_and_old_paths_warn():
    code = (
        "import sys, warnings\n"
        "from workbench import Store, load_model, generate, WorkbenchError\n"
        "assert 'torch' in sys.modules  # load_model was asked for: the runtime is imported\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from workbench.loading import load_model as old\n"
        "assert old is load_model and any(issubclass(x.category, DeprecationWarning) for x in w)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def _run_installed(site: Path, home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), WORKBENCH_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_lists_every_builtin_card_from_outside_the_repo(installed_wheel, tmp_path):
    out = _run_installed(installed_wheel, tmp_path / "home", tmp_path, "-m", "workbench", "store", "list", "--json")
    assert out.returncode == 0, out.stderr
    listed = {e["id"] for e in json.loads(out.stdout)}
    assert listed == {p.stem for p in (ROOT / "models").glob("*.toml")}
    where = _run_installed(installed_wheel, tmp_path / "home", tmp_path, "-c", "import workbench; print(workbench.__file__)")
    assert where.stdout.strip().startswith(str(installed_wheel))


def test_the_wheel_lists_every_shipped_dataset_card(installed_wheel, tmp_path):
    out = _run_installed(installed_wheel, tmp_path / "home", tmp_path, "-m", "workbench", "datasets", "list", "--json")
    assert out.returncode == 0, out.stderr
    assert {e["id"] for e in json.loads(out.stdout)} == {p.stem for p in (ROOT / "corpora").glob("*.toml")}


def test_the_export_child_runs_from_the_wheel(installed_wheel, tmp_path):
    code = (
        "from pathlib import Path\n"
        "from workbench.store import Store\n"
        "from workbench.onnx import export_model\n"
        "from workbench.testing import tiny_models\n"
        "folder = tiny_models.build('llama', Path('tiny'))\n"
        "store = Store()\n"
        "store.add('tiny-llama', local_dir=folder)\n"
        "export = export_model(store, 'tiny-llama')\n"
        "import workbench; print(workbench.__file__); print(export.directory)\n"
    )
    out = _run_installed(installed_wheel, tmp_path / "home", tmp_path, "-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    module_file, export_dir = out.stdout.strip().splitlines()[-2:]
    assert module_file.startswith(str(installed_wheel))
    assert (Path(export_dir) / "model.onnx").is_file()


def test_nothing_in_the_repo_uses_the_deprecated_paths():
    from workbench.deprecated import MOVED

    old = "|".join(MOVED)
    # workbench.<old>, or ..<old> from a subpackage (a single dot is a sibling inside one)
    pattern = re.compile(rf"(from|import) (workbench\.({old})\b|\.\.({old}) import)|from workbench import ({old})\b")
    users = [f"{p.relative_to(ROOT)}: {m.group(0)}"
             for folder in ("workbench", "pages", "tests", "benchmarks", "scripts", "examples")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".ipynb") and p.name != "test_layout.py"
             for m in pattern.finditer(p.read_text(encoding="utf-8"))]
    assert not users


def test_every_page_routes_a_first_request_through_the_app():
    """A page run on its own (legacy mode, see ``route_through_app``) must hand over to app.py."""
    for page in sorted((ROOT / "pages").glob("*.py")):
        if page.name != "_shared.py":
            text = page.read_text(encoding="utf-8")
            assert "sidebar(" in text or "route_through_app()" in text, page.name
