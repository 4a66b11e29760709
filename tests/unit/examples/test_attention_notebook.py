"""examples/attention.ipynb runs top to bottom on a tiny model, in a kernel on this Python."""
import sys

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from workbench.testing import ROOT


def test_example_notebook_runs(tiny_store, monkeypatch):
    monkeypatch.setenv("WORKBENCH_EXAMPLE_MODEL", "tiny-llama")
    nb = nbformat.read(ROOT / "examples" / "attention.ipynb", as_version=4)
    nb.cells.append(new_code_cell("import sys; print(sys.executable)"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    printed = stdout(code[0])
    assert "[layers, heads, query, key]" in printed and "(2, 4," in printed
    head_view = code[1].outputs[0].data["text/html"]
    assert head_view.startswith("<iframe srcdoc=") and "cdnjs" not in head_view
    grid = code[2].outputs[0].data
    assert "application/vnd.plotly.v1+json" in grid
    assert len(grid["application/vnd.plotly.v1+json"]["data"]) == 2 * 4
    assert stdout(code[-1]).strip() == sys.executable  # the kernel is this venv's Python


def stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
