"""The code holds the project's lint rules (pyproject.toml, `[tool.ruff.lint]`), with the ruff version the test extra
pins: a newer ruff's rules are taken on purpose, not by whoever installs last."""

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
