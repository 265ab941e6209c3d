"""scripts/setup.sh says before it installs chromium for the browser test, and lets a user skip it."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("bash", "cat", "cut", "dirname", "sha256sum")


@pytest.fixture
def checkout(tmp_path):
    """A copy of the script in a folder whose .venv is already set up, and a PATH with a fake root apt-get."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # never run: the stamp matches
    (tmp_path / ".venv" / "bin" / "python").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, body in {"id": "echo 0", "apt-get": f'echo "$@" >> {tmp_path}/apt.log'}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    stamp = subprocess.run("sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16", shell=True,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    (tmp_path / ".venv" / ".soundctm-setup").write_text(stamp)
    return tmp_path


def run_setup(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(checkout / "bin"), "HOME": str(checkout), **env}
    return subprocess.run(["bash", "scripts/setup.sh", *args], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=60)


def test_setup_says_it_installs_chromium(checkout):
    out = run_setup(checkout)
    assert out.returncode == 0, out.stderr
    assert "installing Debian's chromium" in out.stderr and "SOUNDCTM_NO_BROWSER=1" in out.stderr
    assert "install -y -q chromium" in (checkout / "apt.log").read_text()


@pytest.mark.parametrize(("args", "env"), [((), {"SOUNDCTM_NO_BROWSER": "1"}), (("--no-browser",), {})])
def test_setup_skips_chromium_when_asked(checkout, args, env):
    out = run_setup(checkout, *args, **env)
    assert out.returncode == 0 and out.stderr == "" and not (checkout / "apt.log").exists()


def test_setup_refuses_an_unknown_argument(checkout):
    out = run_setup(checkout, "--no-brwoser")
    assert out.returncode == 2 and "unknown argument --no-brwoser" in out.stderr


def test_setup_header_documents_the_switch():
    header = (ROOT / "scripts" / "setup.sh").read_text().split("set -euo")[0]
    assert "SOUNDCTM_NO_BROWSER=1" in header and "--no-browser" in header and "350 MB" in header
