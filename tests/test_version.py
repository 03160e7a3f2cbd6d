"""One version: setup.py's (what pip shows), keras_fcn.__version__ (what exported sidecars
say) and the CHANGELOG's latest release. setup.py said 0.1.0 after the package became 0.2.0."""

import os
import re
import subprocess
import sys

import keras_fcn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_py_reports_the_package_version():
    done = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == keras_fcn.__version__


def test_the_changelog_latest_release_is_the_package_version():
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        releases = re.findall(r"^## (\d+\.\d+\.\d+)\b", f.read(), re.M)
    assert releases and releases[0] == keras_fcn.__version__
