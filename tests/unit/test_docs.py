"""The README's variable tables match the roles' argument specs and defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_variables_match_argument_specs():
    run = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'role_docs.py'), '--check'],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
