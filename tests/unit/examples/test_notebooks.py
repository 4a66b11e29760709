"""The store-and-generation and latency notebooks run top to bottom on a tiny model."""
import nbformat
from nbclient import NotebookClient

from workbench.testing import ROOT
from workbench.testing.exports import seed_export


def run_notebook(name: str):
    nb = nbformat.read(ROOT / "examples" / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    return code


def data(cell) -> dict:
    """The first rich output of a cell (a table, HTML, a figure)."""
    return next(o.data for o in cell.outputs if "data" in o)


def stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_store_and_generation_notebook(tiny_store, monkeypatch):
    monkeypatch.setenv("WORKBENCH_EXAMPLE_MODEL", "tiny-llama")
    code = run_notebook("store_and_generation.ipynb")
    assert "tiny-llama" in data(code[0])["text/html"]  # the catalog as a table
    assert "tokens/s, finish:" in stdout(code[1])
    assert "<span" in data(code[2])["text/html"]  # tokens coloured by probability
    assert "application/vnd.plotly.v1+json" in data(code[4])


def test_latency_notebook(tiny_store, monkeypatch):
    monkeypatch.setenv("WORKBENCH_EXAMPLE_MODEL", "tiny-llama")
    seed_export(tiny_store, "tiny-llama")  # the export itself is tested elsewhere
    code = run_notebook("latency.ipynb")
    assert "PASS (fp32)" in stdout(code[0])
    assert "decode_p50_ms" in data(code[0])["text/html"]
    assert "application/vnd.plotly.v1+json" in data(code[1])
