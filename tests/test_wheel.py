"""The wheel works outside this repository: build, install into a fresh venv, init, check, run.

The same steps as the Dockerfile and `.ci/run`: `pip wheel --no-deps .`, then
`pip install campaignbot-*.whl` into a new virtualenv, used from an empty folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.processes import free_port

pytestmark = pytest.mark.slow

#: what the build needs; copied so the build leaves nothing behind in the checkout
SOURCES = ("src", "templates", "config", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def _clean_env() -> dict[str, str]:
    # nothing from this checkout may leak in: no PYTHONPATH, no settings
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CAMPAIGNBOT_", "PYTHON", "VIRTUAL_ENV"))
    }


def _run(args: list[str], cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout; its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), "."], source)
    [wheel] = dist.glob("campaignbot-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], root)
    return venv / "bin"


def test_wheel_contains_package_data(installed: Path, tmp_path: Path) -> None:
    wheel = next((installed.parent.parent / "dist").glob("campaignbot-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "campaignbot/_data/config/campaign.toml" in names
    assert any(n.startswith("campaignbot/_data/templates/alert/") for n in names)
    assert any(n.startswith("campaignbot/_data/templates/web/") for n in names)


def test_installed_wheel_inits_checks_and_runs_in_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    project = tmp_path / "empty"
    project.mkdir()
    campaignbot = str(installed / "campaignbot")
    _run([campaignbot, "init"], project)
    assert (project / "config" / "campaign.toml").is_file()
    assert (project / "templates" / "alert").is_dir()
    assert (project / ".env.example").is_file() and (project / "var").is_dir()
    check = _run([campaignbot, "check"], project)
    assert "OK templates" in check.stdout
    _run([campaignbot, "plan"], project)
    admin = free_port()
    env = _clean_env() | {"CAMPAIGNBOT_HTTP__PORT": "0", "CAMPAIGNBOT_ADMIN__PORT": str(admin)}
    proc = subprocess.Popen(
        [campaignbot, "run"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "started" in line or time.monotonic() > deadline:
                break
        assert any("started" in line for line in seen), "".join(seen)
        # what the Dockerfile's HEALTHCHECK asks
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/livez", timeout=5) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert (project / "var" / "campaignbot.db").is_file()
