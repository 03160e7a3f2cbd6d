"""Module-scoped fixtures start from the same random state whatever ran before them in the
worker (tests/conftest.py's pytest_fixture_setup hook). Before, a module fixture's tiny FCN
took its trunk from the state the previous test left, and on CI one predicted a single class.
"""

import ast
import shutil

import numpy as np

pytest_plugins = ["pytester"]

INNER = '''
import numpy as np
import pytest

@pytest.fixture(scope="module")
def drawn():
    import keras
    return float(np.random.random()), float(keras.random.uniform(()).numpy())

def test_uses_the_random_state():
    np.random.random(100)
    import keras
    keras.random.uniform((100,))

def test_records(drawn):
    with open("drawn.txt", "w") as f:
        f.write(repr(drawn))
'''


def test_a_module_fixture_draws_the_same_after_other_tests(pytester):
    shutil.copy(__file__.replace("test_fixture_seeds.py", "conftest.py"),
                pytester.path / "conftest.py")
    pytester.makepyfile(test_inner=INNER)
    drawn = []
    for order in (["test_inner.py::test_records"],
                  ["test_inner.py::test_uses_the_random_state", "test_inner.py::test_records"]):
        result = pytester.runpytest_inprocess("-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                                              *order)
        result.assert_outcomes(passed=len(order))
        drawn.append((pytester.path / "drawn.txt").read_text())
    assert drawn[0] == drawn[1]
    np.random.seed(0)
    assert ast.literal_eval(drawn[0])[0] == np.random.random()
