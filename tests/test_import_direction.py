"""Package direction: ``training`` imports ``recsys_spark``, never the other way round, so the Spark
library (and the Spark scoring workers it ships) never pulls in the trainer. Every import statement
counts, at module level or inside a function."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"recsys_spark": "training"}
"""package -> the package it must not import."""


def forbidden_imports(package_dir: Path, forbidden: str) -> list[str]:
    """``file:line module`` for every import of ``forbidden`` (or a submodule) under ``package_dir``."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found += [f"{path.relative_to(package_dir.parent)}:{node.lineno} {m}" for m in modules
                      if m == forbidden or m.startswith(forbidden + ".")]
    return found


def test_recsys_spark_never_imports_training():
    for package, forbidden in FORBIDDEN.items():
        assert forbidden_imports(ROOT / package, forbidden) == [], f"{package} must not import {forbidden}"


def test_twin_the_scan_finds_module_and_function_level_imports(tmp_path):
    package = tmp_path / "recsys_spark"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("import os\nimport training.model as m\nfrom trainingwheels import x\n")
    (package / "sub" / "b.py").write_text("def f():\n    from training import registry\n    return registry\n")
    assert forbidden_imports(package, "training") == [
        "recsys_spark/a.py:2 training.model", "recsys_spark/sub/b.py:2 training"]
