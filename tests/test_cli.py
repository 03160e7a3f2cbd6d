"""Tests of keras_fcn.training.cli: deprecated flag names, and the recipes that keep one."""

import json
import os
import warnings

import pytest
from absl import flags

from keras_fcn import training
from tool_flags import run_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flags():
    values = flags.FlagValues()
    flags.DEFINE_string("output_dir", "runs/default", "Run directory.", flag_values=values)
    training.define_deprecated_alias("run_dir", "output_dir", flag_values=values)
    return values


def test_deprecated_alias_sets_the_new_flag_and_warns():
    values = _flags()
    with pytest.warns(FutureWarning, match="--run_dir is deprecated: use --output_dir"):
        values(["prog", "--run_dir=runs/old"])
    assert values.output_dir == "runs/old"
    assert values["run_dir"].help == "Deprecated: use --output_dir."


def test_the_new_flag_alone_does_not_warn():
    import warnings

    values = _flags()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values(["prog", "--output_dir=runs/new"])
        default = _flags()
        default(["prog"])
    assert values.output_dir == "runs/new" and default.output_dir == "runs/default"


@pytest.mark.parametrize("script, flag, extra", [
    ("train_siftflow.py", "--output_dir", ["--epochs=1", "--steps_per_epoch=1"]),
    ("train_nyud.py", "--run_dir", ["--modality=rgb"]),  # the 0.1.0 name still works
])
def test_nyud_and_siftflow_recipes_write_to_output_dir(tmp_path, monkeypatch, script, flag,
                                                      extra):
    """Also finding 20 of a walkthrough: every --synthetic run left its fake_* folder in the
    temp folder, and --epochs / --steps_per_epoch were ignored. In this process, as the
    script's __main__ block runs it (a TensorFlow start-up less; the fake_* folder must be gone
    when the run returns, not only when a process exits)."""
    out, temp = tmp_path / "run", tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    with warnings.catch_warnings(record=True) as caught:  # a process prints them on stderr
        warnings.simplefilter("always")
        proc = run_in_process(f"examples/{script}", "--synthetic", f"{flag}={out}", *extra)
    warned = proc.stderr + "".join(str(warning.message) for warning in caught)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(out / "model.keras")
    assert ("--run_dir is deprecated" in warned) == (flag == "--run_dir")
    assert [name for name in os.listdir(temp) if name.startswith("fake_")] == []
    if script == "train_siftflow.py":
        metrics = json.load(open(out / "metrics.json"))
        assert metrics["epochs"] == 1 and len(metrics["history"]) == 1
        assert json.load(open(out / "config.json"))["flags"]["variant"] == "16s"
