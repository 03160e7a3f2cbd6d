"""The package's layout is a checked contract (docs/architecture.md): dependencies run one way
(import-linter, .importlinter), no module imports the package root or another module's private
names, and no module grows past ~500 lines."""

import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_fcn")
MAX_LINES = 500


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, ROOT), path


def _imports(path):
    """(module, names) of every `from X import names` and (X, None) of every `import X`."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                         "lint-imports")
    if not os.path.exists(lint):
        pytest.fail("lint-imports not found: pip install -e '.[dev]' installs import-linter")
    proc = subprocess.run([lint, "--config", os.path.join(ROOT, ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_module_imports_the_package_root_or_private_names():
    problems = []
    for rel, path in _modules():
        if rel == os.path.join("keras_fcn", "__init__.py"):
            continue
        for module, names in _imports(path):
            if module == "keras_fcn" and names is None:
                problems.append(f"{rel}: import keras_fcn")
            elif module == "keras_fcn":
                for name in names:
                    if not os.path.exists(os.path.join(PACKAGE, name)) and not os.path.exists(
                            os.path.join(PACKAGE, name + ".py")):
                        problems.append(f"{rel}: from keras_fcn import {name} (a root re-export)")
            elif module.startswith("keras_fcn.") and names:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    problems.append(f"{rel}: from {module} import {', '.join(private)}")
    assert not problems, "\n".join(problems)


def test_no_library_module_is_longer_than_the_limit():
    long = {}
    for rel, path in _modules():
        with open(path, encoding="utf-8") as f:
            count = sum(1 for _ in f)
        if count > MAX_LINES:
            long[rel] = count
    assert not long, f"modules over {MAX_LINES} lines (one job per module): {long}"


def _lint_a_changed_copy(tmp_path, change):
    """Runs lint-imports on a copy of the package after ``change(copy_folder)``."""
    copy = tmp_path / "keras_fcn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    change(copy)
    lint = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                         "lint-imports")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    return subprocess.run([lint, "--config", os.path.join(ROOT, ".importlinter"), "--no-cache"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_the_contract_catches_a_backward_import(tmp_path):
    """A copy of the package where the models import training breaks the contract."""
    def backward(copy):
        layers_py = copy / "layers.py"
        layers_py.write_text(layers_py.read_text() + "\nfrom keras_fcn import training  # noqa\n")

    proc = _lint_a_changed_copy(tmp_path, backward)
    assert proc.returncode != 0
    assert "keras_fcn.layers is not allowed to import keras_fcn.training" in proc.stdout


def test_the_contract_catches_a_data_set_reaching_the_network(tmp_path):
    """A copy of the package where a data set module imports urllib breaks the offline
    contract (the data sets read local files only)."""
    proc = _lint_a_changed_copy(tmp_path, lambda copy: (copy / "datasets" / "fetching.py")
                                .write_text("import urllib.request  # noqa\n"))
    assert proc.returncode != 0
    assert "keras_fcn.datasets is not allowed to import urllib" in proc.stdout
