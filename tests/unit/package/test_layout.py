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


def _imported(node: ast.AST, package: str, modules) -> set[str]:
    """The modules an ``import`` / ``from ... import`` node names (relative ones resolved
    against ``package``); other nodes name none."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    return {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}


def _modules() -> dict[str, tuple[Path, str, ast.Module]]:
    """Module name -> (file, the package its relative imports start from, its syntax tree)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out[name] = (path, package, ast.parse(path.read_text(encoding="utf-8")))
    return out


def _import_time_edges() -> dict[str, set[str]]:
    """Module -> workbench modules it imports when it is imported (top level, not inside
    functions or ``if TYPE_CHECKING``)."""
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, (_, package, tree) in modules.items():
        found = set()
        for node in tree.body:  # top level only
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)) else ():
                found |= _imported(sub, package, modules)
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def _area(module: str) -> str:
    """The part of the package a module belongs to: ``workbench.store.entries`` -> ``store``,
    ``workbench.common`` -> ``common``."""
    return module.split(".")[1] if module.count(".") else ""


def _area_imports() -> dict[str, dict[str, set[str]]]:
    """Area -> {other area it imports: the modules of the area that do}, counting every import,
    inside functions and ``if TYPE_CHECKING`` too (a lazy import still couples two areas)."""
    modules = _modules()
    graph: dict[str, dict[str, set[str]]] = {}
    for name, (_, package, tree) in modules.items():
        for node in ast.walk(tree):
            for target in _imported(node, package, modules):
                if target.startswith("workbench.") and _area(target) != _area(name):
                    graph.setdefault(_area(name), {}).setdefault(_area(target), set()).add(name)
    return graph


def test_the_store_imports_nothing_of_the_package_but_the_leaves():
    """The store sits below every other area: it imports only ``common`` and ``errors``, even
    lazily (``workbench.data``, ``workbench.runtime`` and ``workbench.apps`` build on it; what it
    needs of them, such as the dataset card's schema, lives in the store)."""
    graph = _area_imports()
    assert {"data", "store"} <= set(graph)  # the walk sees both areas
    assert set(graph["data"]) >= {"store"}
    above = {area: sorted(users) for area, users in graph["store"].items() if area not in ("common", "errors")}
    assert above == {}, f"the store imports areas above it: {above}"


def test_only_the_store_renames_files():
    """Whatever lands under the store root is put there by the store's primitives
    (``workbench.store.install.publish``, ``installing``, ``Store.discard_path``) or the atomic
    writes of ``workbench.common``; no other module renames files itself."""
    renames = {("os", "replace"), ("os", "rename"), ("os", "renames"), ("shutil", "move")}
    offenders = []
    for name, (path, _, tree) in _modules().items():
        if _area(name) in ("store", "common"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
                if (owner, node.func.attr) in renames or node.func.attr == "rename":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node.func)}")
    assert offenders == [], offenders


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
