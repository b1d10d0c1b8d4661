"""Build hook: ship the default templates and example campaign inside the wheel.

`templates/` and `config/` stay where organizers and developers edit them, at the
repository root; at build time they are copied into the package as
`campaignbot/_data/`, so `campaignbot init` works from a pip-installed wheel.
Everything else about the build lives in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("templates", "config")


class BuildWithData(build_py):
    """build_py that also copies the shipped project files into the package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "campaignbot" / "_data"
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():  # an sdist without them would fail the wheel test
                shutil.copytree(
                    source,
                    target / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )


setup(cmdclass={"build_py": BuildWithData})
