"""Dependency direction (tui → probes → model) and imports only through ``infermon.*``."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "tui", "probes", "model", "themes")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def test_no_bare_top_level_imports_of_our_folders():
    for package in PACKAGES + ("tests", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).exists() else []:
            for name in imports_of(path):
                assert name.split(".")[0] not in PACKAGES, f"{path}: imports {name}; use infermon.{name}"


def test_model_imports_nothing_else_of_ours_and_no_ui():
    for path in sources("model"):
        for name in imports_of(path):
            if name.startswith("infermon."):
                assert name.startswith("infermon.model"), f"{path}: imports {name}"
            assert name.split(".")[0] not in ("textual", "rich", "psutil", "pynvml"), f"{path}: imports {name}"


def test_probes_never_import_textual_or_the_tui():
    for path in sources("probes"):
        for name in imports_of(path):
            assert name.split(".")[0] != "textual", f"{path}: imports {name}"
            assert not name.startswith(("infermon.tui", "infermon.cli")), f"{path}: imports {name}"


def test_calc_does_not_load_textual():
    code = ("import sys; from infermon.cli.main import main; "
            "main(['calc', '--model', 'gpt2', '--gpu', 't4', '--json']); "
            "assert 'textual' not in sys.modules, 'textual imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr


def test_package_is_importable_only_as_infermon():
    code = "import importlib.util as u; assert u.find_spec('model') is None and u.find_spec('tui') is None"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
