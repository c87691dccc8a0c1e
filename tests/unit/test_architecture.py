"""The import-layer contract of docs/architecture.md, checked by import-linter (pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_layers_import_downwards_only():
    executable = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(executable).exists():
        pytest.fail("import-linter is a test dependency: pip install -e '.[test]'")
    completed = subprocess.run([executable], cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_kernels_do_not_import_domain_or_io():
    for path in (ROOT / "src" / "shoals" / "kernels").glob("*.py"):
        imports = [line.split() for line in path.read_text().splitlines()
                   if line.lstrip().startswith(("import ", "from "))]
        for words in imports:
            module = words[1]
            for forbidden in ("shoals.market", "shoals.instruments", "shoals.methods", "shoals.io", "pandas"):
                assert not module.startswith(forbidden), f"{path.name} imports {forbidden}"
