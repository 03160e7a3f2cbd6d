"""Small mends of the eighth session: curves.png with a monitored loss, per-stage configs of a
staged run checked before any stage trains."""

import pytest
from PIL import Image

from keras_fcn.training import TrainConfig
from keras_fcn.training.fit import curve_metric
from keras_fcn.training.optimizers import check_stage_schedules
from keras_fcn.training.run_dir import plot_curves

HISTORY = [{"epoch": 1, "loss": 1.0, "val_loss": 1.2, "mean_iu": 0.3, "val_mean_iu": 0.25},
           {"epoch": 2, "loss": 0.8, "val_loss": 1.1, "mean_iu": 0.4, "val_mean_iu": 0.3}]


@pytest.mark.parametrize("monitor, metric", [
    ("val_mean_iu", "mean_iu"), ("val_loss", "mean_iu"),
    ("val_semantic_loss", "semantic_mean_iu"), ("val_semantic_mean_iu", "semantic_mean_iu")])
def test_a_monitored_loss_draws_the_iu_beside_the_loss(monitor, metric):
    assert curve_metric(monitor) == metric


@pytest.mark.parametrize("metric, history, panels", [
    ("mean_iu", HISTORY, 2),
    ("loss", HISTORY, 1),  # was two panels of the same loss
    ("semantic_mean_iu", HISTORY, 1),  # not logged: no empty panel
    ("mean_iu", [{"epoch": 1, "loss": 1.0}], 1)])
def test_curves_have_a_panel_per_logged_value(tmp_path, metric, history, panels):
    path = tmp_path / "curves.png"
    plot_curves(history, str(path), metric=metric)
    assert Image.open(path).size[0] == 450 * panels  # 5 inches a panel at 90 dpi


def test_stage_configs_are_checked_before_any_stage_trains():
    stages = ("32s", "16s", "8s")
    config = TrainConfig()
    check_stage_schedules(None, stages)
    check_stage_schedules({"16s": config.replace(epochs=4, warmup_epochs=1)}, stages)
    with pytest.raises(ValueError, match=r"FCN-16s \(stage_configs\): --warmup_epochs .* "
                                         r"warmup_epochs=2, epochs=2"):
        check_stage_schedules({"16s": config.replace(epochs=2, warmup_epochs=2)}, stages)
    with pytest.raises(ValueError, match=r"stages this run does not train: \['16'\]. "
                                         r"Expected some of \['32s', '16s', '8s'\]"):
        check_stage_schedules({"16": config}, stages)  # a typo was silently ignored


def test_a_resume_that_replans_the_schedule_says_so(tmp_path, capsys):
    from keras_fcn.training.recipe import SCHEDULE_FLAGS
    from keras_fcn.training.run_dir import write_run_config
    flags = {"epochs": 50, "lr_schedule": "poly", "widths": (4, 8)}
    write_run_config(str(tmp_path), flags)
    write_run_config(str(tmp_path), flags, resume=True, replan=SCHEDULE_FLAGS)
    assert capsys.readouterr().out == ""
    write_run_config(str(tmp_path), dict(flags, epochs=80), resume=True, replan=SCHEDULE_FLAGS)
    out = capsys.readouterr().out
    assert out.startswith("--resume changes --epochs=50 to 80: the learning-rate schedule is "
                          "planned anew") and out.count("\n") == 1


def test_the_sure_pixel_gate_fails_when_no_pixel_is_sure():
    """An untrained float model is sure nowhere: --min_confident_agreement passed unchecked."""
    from keras_fcn.export.quality import check_thresholds
    row = {"variant": "int8", "agreement": 99.0, "mean_iu_delta": -0.1, "size_ratio": 0.3,
           "speedup": 4.0}
    rows = [dict(row, variant="keras_float"), dict(row, confident_agreement=None),
            dict(row, variant="float16", confident_agreement=99.5)]
    assert check_thresholds(rows, min_confident_agreement=99.0) == [
        "int8: no pixel where the float model is sure, so the agreement there "
        "(min_confident_agreement=99.0%) cannot be checked"]
    assert check_thresholds(rows, min_agreement=98.0) == []  # other gates as before


def test_a_smoke_run_of_the_gpu_benchmark_does_not_write_the_gpu_results_file():
    import importlib.util
    import os
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("gpu_bench",
                                                  os.path.join(root, "benchmarks", "gpu.py"))
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    smoke = gpu.parse_args(["--smoke"]).out
    assert smoke.startswith(os.path.join(tempfile.gettempdir(), "keras_fcn_gpu_smoke_"))
    assert smoke.endswith("gpu.md") and gpu.parse_args(["--smoke"]).out != smoke  # a new one
    assert gpu.parse_args([]).out == os.path.join(root, "benchmarks", "results", "gpu.md")
    assert gpu.parse_args(["--smoke", "--out", "a.md"]).out == "a.md"
