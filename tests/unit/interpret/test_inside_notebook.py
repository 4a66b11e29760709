"""examples/inside.ipynb runs top to bottom on a tiny model and its tuned copy, in a kernel."""
import nbformat
from workbench.testing import ROOT
from nbclient import NotebookClient


def test_inside_notebook_runs(tuned_store, monkeypatch):
    monkeypatch.setenv("WORKBENCH_EXAMPLE_MODEL", "tiny-llama")
    monkeypatch.setenv("WORKBENCH_EXAMPLE_TUNED", "tiny-llama-tuned")
    nb = nbformat.read(ROOT / "examples" / "inside.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    assert "= num_parameters()" in stdout(code[0])
    counts = stdout(code[0]).split(" parameters counted = num_parameters() ")
    assert counts[0].strip() == counts[1].split(";")[0].strip()
    for i in (1, 2, 3, 4, 6, 7):
        assert "application/vnd.plotly.v1+json" in code[i].outputs[-1].data
    assert "top-1 from layer" in stdout(code[3])
    assert "completeness error" in stdout(code[5]) and 'class="wb-tok"' in code[5].outputs[-1].data["text/html"]
    assert "KL = " in stdout(code[7]) and not stdout(code[7]).startswith("KL = 0.0000")


def stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
