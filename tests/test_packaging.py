"""The package's public surface and its dependency lists."""

import re
import tomllib
from pathlib import Path

import npanalytics

ROOT = Path(__file__).resolve().parents[1]

# conda-forge spells a few PyPI names differently.
CONDA_TO_PYPI = {"python-kubernetes": "kubernetes", "prometheus_client": "prometheus-client"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def test_all_lists_exactly_the_public_names():
    public = {n for n in dir(npanalytics) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(npanalytics, n)).__name__ == "module"}
    assert set(npanalytics.__all__) - {"__version__"} == public - modules
    assert len(npanalytics.__all__) == len(set(npanalytics.__all__))
    for name in npanalytics.__all__:
        assert hasattr(npanalytics, name), name


def test_environment_yml_has_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = {_name(r) for r in project["dependencies"]}
    for extra, reqs in project["optional-dependencies"].items():
        pypi |= {_name(r) for r in reqs if not r.startswith("npanalytics")}
    conda = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        m = re.match(r"^  - ([A-Za-z0-9_.-]+)", line)
        if m:
            name = _name(m.group(1))
            conda.add(CONDA_TO_PYPI.get(name, name))
    assert conda - NOT_PACKAGES == pypi


def test_import_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, npanalytics; "
        "heavy = [m for m in ('matplotlib', 'ipywidgets', 'jinja2', 'kubernetes', 'prometheus_api_client') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
