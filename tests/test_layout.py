"""Layering: cli → views (tui, headless) → live → probes → model, and imports only through ``infermon.*``.

Each rule is a table entry below, checked against every import statement of every module, so a
new arrow the wrong way fails here.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "tui", "views", "live", "probes", "model", "themes", "testing")

# What each package may import of ours. cli sits on top and may import everything.
ALLOWED = {
    "model": {"model"},
    "probes": {"probes", "model"},
    "live": {"live", "probes", "model"},
    "views": {"views", "live", "probes", "model"},
    "tui": {"tui", "views", "live", "probes", "model", "themes"},
    "themes": {"themes"},
    "cli": set(PACKAGES) - {"testing"},
    # The fakes (infermon.testing) stand in for what a machine lacks; nothing above may load them.
    "testing": {"testing", "views", "live", "probes", "model"},
}
# Third-party packages each layer must never load: the UI stays out of the arithmetic and the data.
FORBIDDEN_THIRD_PARTY = {
    "model": {"textual", "rich", "psutil", "pynvml", "prometheus_client"},
    "probes": {"textual", "rich"},
    "live": {"textual", "rich"},
    "views": {"textual"},
}


# An engine module (probes/engines/<engine>.py) declares one engine and nothing else: it may import
# the Prometheus text handling, the snapshot types and the standard library, and no other module.
ENGINE_MODULE_ALLOWED = {"infermon.probes.engines.prometheus", "infermon.probes.snapshot"}
ENGINE_MACHINERY = {"__init__", "prometheus", "registry", "mapping", "probe", "discovery"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def sources(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def layer_violations(package: str) -> list[str]:
    found = []
    for path in sources(package):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "infermon" and len(parts) > 1 and parts[1] not in ALLOWED[package]:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
            if parts[0] in FORBIDDEN_THIRD_PARTY.get(package, ()):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_no_bare_top_level_imports_of_our_folders():
    for package in PACKAGES + ("tests", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).exists() else []:
            for name in imports_of(path):
                assert name.split(".")[0] not in PACKAGES, f"{path}: imports {name}; use infermon.{name}"


def test_tests_and_benchmarks_import_the_fakes_as_a_package():
    """No ``sys.path`` edits: the fakes are ``infermon.testing``, the benchmarks load one another as
    scripts from their own folder."""
    edits = [f"{path.relative_to(ROOT)}: {line.strip()}"
             for folder in ("tests", "bench", "testing") for path in sorted((ROOT / folder).rglob("*.py"))
             for line in path.read_text(encoding="utf-8").splitlines()
             if path.name != "test_layout.py" and ("sys.path.insert" in line or "sys.path.append" in line)]
    assert not edits, "\n".join(edits)


def test_benchmarks_import_nothing_from_the_tests_folder():
    """The tests folder is not on a benchmark's path: what both need lives in infermon.testing."""
    test_modules = {path.stem for path in (ROOT / "tests").glob("*.py")}
    found = [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "bench").rglob("*.py"))
             for name in imports_of(path) if name.split(".")[0] in test_modules]
    assert not found, "\n".join(found)


def test_every_package_imports_only_below_itself():
    violations = [v for package in ALLOWED for v in layer_violations(package)]
    assert not violations, "\n".join(violations)


def test_the_layering_check_catches_an_arrow_the_wrong_way(tmp_path, monkeypatch):
    # The rule above must be able to fail: a model module importing the dashboard is caught.
    fake_root = tmp_path
    (fake_root / "model").mkdir()
    (fake_root / "model" / "bad.py").write_text("from infermon.tui.app import InfermonApp\nimport textual\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert len(layer_violations("model")) == 2


def engine_module_violations() -> list[str]:
    found = []
    for path in sorted((ROOT / "probes" / "engines").glob("*.py")):
        if path.stem in ENGINE_MACHINERY or path.stem.startswith("_"):
            continue
        for name in imports_of(path):
            top = name.split(".")[0]
            if name in ENGINE_MODULE_ALLOWED or (top in sys.stdlib_module_names and top != "infermon"):
                continue
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_engine_modules_import_only_the_prometheus_module_and_snapshot_types():
    engines = [p.stem for p in (ROOT / "probes" / "engines").glob("*.py") if p.stem not in ENGINE_MACHINERY]
    assert {"vllm", "sglang", "tgi", "llamacpp", "tensorrt_llm"} <= set(engines)
    violations = engine_module_violations()
    assert not violations, "\n".join(violations)


def test_the_engine_module_rule_can_fail(tmp_path, monkeypatch):
    (tmp_path / "probes" / "engines").mkdir(parents=True)
    (tmp_path / "probes" / "engines" / "newengine.py").write_text(
        "import re\nfrom infermon.probes.http import fetch\nfrom .registry import ENGINES\nimport psutil\n"
        "from infermon.probes.engines.prometheus import Exposition\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert sorted(v.split(" imports ")[1] for v in engine_module_violations()) == [
        ".registry", "infermon.probes.http", "psutil"]


def test_calc_does_not_load_textual():
    code = ("import sys; from infermon.cli.main import main; "
            "main(['calc', '--model', 'gpt2', '--gpu', 't4', '--json']); "
            "assert 'textual' not in sys.modules, 'textual imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr


def test_headless_views_do_not_load_textual():
    code = ("import sys; import infermon.views.live_json, infermon.views.live_report, infermon.views.exporter, "
            "infermon.views.recording, infermon.live.derive; "
            "assert 'textual' not in sys.modules, 'textual imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr


def test_package_is_importable_only_as_infermon():
    code = ("import importlib.util as u; "
            "assert all(u.find_spec(n) is None for n in ('model', 'tui', 'live', 'views', 'probes'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
