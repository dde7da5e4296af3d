"""The notebooks: committed without outputs, thin (no function or class defined), and they run.

They are executed with nbclient in a kernel started from this interpreter (the
virtualenv's python, with its ipykernel): a kernelspec written into a temporary
folder names ``sys.executable``, so neither the machine's nor the user's Jupyter
kernels are used.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "python3"
CELL_TIMEOUT_SECONDS = 300
PARALLEL_NOTEBOOKS = 3

# Each notebook, with what its outputs must show (a MIME type or a text); 06 needs root.
EXPECTED = {
    "01-quickstart": ["image/png", "entry_node", "severity", "default/web:http"],
    "02-load-skew-explorer": ["image/png", "application/vnd.jupyter.widget-view+json", "etp-local-topology"],
    "03-session-affinity": ["image/png", "application/vnd.jupyter.widget-view+json", "affinity-concentration"],
    "04-proxy-mode-overhead": ["image/png", "application/vnd.jupyter.widget-view+json", "KEP-3866", "At 8,000 Service ports",
                               "slope_ns_per_service"],
    "05-troubleshooting": ["image/png", "application/vnd.jupyter.widget-view+json", "stale-conntrack"],
    "06-lab": ["image/png", "web-3", "notebook-lab"],
}
DEF_OR_CLASS = re.compile(r"^\s*(async\s+def|def|class)\s|\blambda\b", re.MULTILINE)


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec named python3 that starts this interpreter's ipykernel."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "npanalytics test kernel", "language": "python",
    }))
    return root


def _client(nb: nbformat.NotebookNode, kernel_dir: Path) -> NotebookClient:
    km = AsyncKernelManager(kernel_name=KERNEL_NAME,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    return NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_SECONDS, kernel_name=KERNEL_NAME,
                          resources={"metadata": {"path": str(NOTEBOOKS)}})


def _execute(nb: nbformat.NotebookNode, kernel_dir: Path) -> nbformat.NotebookNode:
    return _client(nb, kernel_dir).execute()


@pytest.fixture(scope="module")
def executed(kernel_dir: Path) -> dict[str, nbformat.NotebookNode | Exception]:
    """The dataset notebooks (not 06), executed once, a few at a time (kernels mostly wait)."""
    names = [n for n in sorted(EXPECTED) if n != "06-lab"]

    async def run_all() -> list[nbformat.NotebookNode | Exception]:
        slots = asyncio.Semaphore(PARALLEL_NOTEBOOKS)

        async def one(name: str) -> nbformat.NotebookNode | Exception:
            async with slots:
                try:
                    return await _client(_read(name), kernel_dir).async_execute()
                except Exception as err:  # reported by the test of that notebook
                    return err

        return await asyncio.gather(*(one(n) for n in names))

    return dict(zip(names, asyncio.run(run_all())))


def _all_output_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for mime, data in out.get("data", {}).items():
                parts.append(mime)
                parts.append(data if isinstance(data, str) else json.dumps(data))
    return "\n".join(parts)


def test_every_notebook_is_listed():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_committed_without_outputs(name):
    for cell in _code_cells(_read(name)):
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell has outputs"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_thin(name):
    nb = _read(name)
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    for cell in _code_cells(nb):
        assert not DEF_OR_CLASS.search(cell.source), f"{name} defines a function or class:\n{cell.source}"
        assert "@" not in cell.source, f"{name} decorates something:\n{cell.source}"
    assert "import npanalytics" in _code_cells(nb)[0].source


def test_thin_check_catches_a_definition():
    assert DEF_OR_CLASS.search("x = 1\ndef helper(a):\n    return a")
    assert DEF_OR_CLASS.search("class Thing:\n    pass")
    assert DEF_OR_CLASS.search("frame.apply(lambda row: row.x)")
    assert not DEF_OR_CLASS.search("defaults = load()\nclassify(x)\nlambdas = 1")


def test_kernel_runs_this_interpreter(kernel_dir):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys, ipykernel\nprint(sys.executable)"))
    out = _execute(nb, kernel_dir)
    assert out.cells[0].outputs[0]["text"].strip() == sys.executable


def _check(name: str, executed: nbformat.NotebookNode | Exception) -> None:
    if isinstance(executed, Exception):
        raise executed
    errors = [o for c in _code_cells(executed) for o in c.outputs if o.output_type == "error"]
    assert errors == []
    text = _all_output_text(executed)
    for wanted in EXPECTED[name]:
        assert wanted in text, f"{name}: no {wanted!r} in the outputs"
    assert all(c.execution_count for c in _code_cells(executed))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if n != "06-lab"])
def test_notebook_runs(name, executed):
    _check(name, executed[name])


@pytest.mark.slow
@pytest.mark.root
def test_lab_notebook_runs(need_root, need_binary, kernel_dir, tmp_path, monkeypatch):
    for binary in ("iptables-legacy", "nft", "conntrack"):
        need_binary(binary)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: the recording lands here
    _check("06-lab", _execute(_read("06-lab"), kernel_dir))
    assert list(tmp_path.iterdir()) == []  # the notebook cleaned up after itself
