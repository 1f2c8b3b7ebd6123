"""The package as installed: every subpackage of the repository is listed for setuptools."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tests", "build", "man", ".venv", ".lint", ".git"}


def test_every_subpackage_is_installed() -> None:
    # The repository root is the package (package-dir "vecx" = "."): setuptools installs only the
    # packages listed, so a new directory missing from the list works from a checkout, not from pip.
    line = re.search(r"^packages = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert line, "pyproject.toml lists the packages on one line"
    listed = set(re.findall(r'"([\w.]+)"', line.group(1)))
    found = {"vecx"} | {
        "vecx." + ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.rglob("__init__.py")
        if not SKIP & set(init.relative_to(ROOT).parts) and init.parent != ROOT
    }
    assert found == listed
