"""What the recipes and tools say (walkthrough C, 2026-12-06): --temporal_consistency refused
before the data, the temporal-consistency and test-time-augmentation lines, the precision
tools/evaluate.py ran at, --synthetic's finished-run message, and convert_weights.py's strict
refusal of a finer FCN's layers. Each test failed on the code before its fix."""

import json
import os
import math
import re

import numpy as np
import pytest

from keras_fcn import io, runtime, training
from keras_fcn import weights as weights_lib
from keras_fcn.models import build_fcn
from keras_fcn.training import recipe
from keras_fcn.training import run_config
from keras_fcn.training import run_dir as run_dir_lib
from keras_fcn.training.checks import check_before_run
from keras_fcn.training.run_dir import finished_run
from tiny import TINY_FC, TINY_WIDTHS, saved_raw_rgb_fcn
from tool_flags import script, tool

WIDTHS = ",".join(map(str, TINY_WIDTHS))


@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf])
def test_a_bad_temporal_weight_is_refused_before_the_data_naming_the_flag(tmp_path, weight):
    config = training.TrainConfig().replace(
        dataset="camvid", data_dir=str(tmp_path / "no_data"), temporal_consistency=weight,
        output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"^--temporal_consistency must be a finite number >= 0 "
                                         r"\(0: off; .*Received: temporal_consistency="):
        training.run(config)  # before: the data was read first (a missing folder here)
    assert not (tmp_path / "run").exists()
    for fine in (0.0, 10.0):
        check_before_run(training.TrainConfig().replace(temporal_consistency=fine))


def test_the_temporal_line_names_weight_kind_and_pairs():
    config = training.TrainConfig().replace(temporal_consistency=2.5, temporal_loss="kl")
    assert recipe.temporal_line(config, 8) == (
        "Temporal consistency: weight 2.5, loss kl, on pairs of each of the 8 training images "
        "and a copy moved by a random camera warp")
    video = config.replace(unlabelled_video_dir="clips", unlabelled_pairs=40)
    assert recipe.temporal_line(video, 8).endswith(", plus up to 40 frame pairs of clips")


def test_the_final_heading_names_test_time_augmentation():
    assert recipe.tta_note(False, None) == "" and recipe.tta_note(False, (1.0,)) == ""
    assert recipe.tta_note(True, None) == ", test-time augmentation: horizontal flip"
    assert recipe.tta_note(False, (0.75, 1.0, 1.25)) == (
        ", test-time augmentation: scales 0.75, 1, 1.25")


def test_evaluate_prints_and_records_the_resolved_precision(tmp_path, capsys):
    model, path = saved_raw_rgb_fcn(tmp_path, 4, seed=0)  # shapes: 4 classes
    expected = runtime.resolve_precision("auto", model=model)  # bfloat16 on AMX, else float32
    output = tmp_path / "e.json"
    with tool("evaluate", f"--model={path}", "--max_images=1", "--num_val=1",
              "--precision=auto", f"--output={output}") as t:
        t.main(["prog"])
    record = json.loads(output.read_text())
    assert record["precision"] == expected and record["requested_precision"] == "auto"
    assert f") in {expected} (--precision=auto) on " in capsys.readouterr().out


def _finished(run, epochs):
    run.mkdir()
    build_fcn("32s", 4, weights=None, widths=TINY_WIDTHS, fc_units=TINY_FC).save(
        str(run / "model.keras"))
    io.write_json(str(run / "metrics.json"), {"status": "completed", "epochs": epochs,
                                              "final_val": {"semantic": {"mean_iu": 0.25}}})
    run_config.write_run_config(str(run), {"variant": "16s", "synthetic": True})


def test_synthetic_finished_run_is_not_told_to_use_weights(tmp_path):
    run = tmp_path / "run"
    _finished(run, 2)
    with script("examples/train_siftflow.py", "msg_siftflow", "--synthetic", "--resume",
                "--epochs=3", f"--output_dir={run}") as module:
        with pytest.raises(ValueError) as info:
            module.main(["train_siftflow.py"])
    message = str(info.value)
    assert message.startswith(f"The --synthetic run in '{run}' is complete after 2 epochs")
    assert "Train it again with --overwrite, or give another --output_dir" in message
    assert "--weights " not in message  # --synthetic refuses --weights
    with pytest.raises(ValueError, match=r"Start a new run from its weights \(--weights "):
        finished_run(str(run), 3)  # a real-data run: as before


def _fcn8s_npz(tmp_path):
    model = build_fcn("8s", 3, weights=None, name="fcn8s", widths=TINY_WIDTHS,
                      fc_units=TINY_FC)
    return weights_lib.save_npz(weights_lib.read_weights(model), str(tmp_path / "fcn8s.npz"))


def test_strict_conversion_refuses_a_finer_fcns_layers(tmp_path):
    source = _fcn8s_npz(tmp_path)
    output = tmp_path / "out.npz"
    args = (f"--input={source}", "--model=fcn32s", "--num_classes=3", f"--widths={WIDTHS}",
            f"--fc_units={TINY_FC}", f"--output={output}")
    with tool("convert_weights", *args) as module:
        with pytest.raises(ValueError, match=re.escape(
                "has learned layers that the fcn32s model has no place for: ['score_pool3', "
                "'score_pool4'] (all unused: ['score_pool3', 'score_pool4', 'upscore2', "
                "'upscore8', 'upscore_pool4']); convert it with --model=fcn8s (or "
                "fcn8s_at_once), or pass --nostrict")):
            module.convert()
    assert not output.exists()
    with tool("convert_weights", *args, "--nostrict") as module:  # as before: converted
        assert sorted(module.convert()["unused"]) == [
            "score_pool3", "score_pool4", "upscore2", "upscore8", "upscore_pool4"]
    saved = weights_lib.load_npz(output)
    np.testing.assert_array_equal(saved["score_fr"][0],
                                  weights_lib.load_npz(source)["score_fr"][0])


def test_an_earlier_stages_upsampling_is_only_reported(tmp_path):
    model = build_fcn("32s", 3, weights=None, name="fcn32s", widths=TINY_WIDTHS,
                      fc_units=TINY_FC)
    source = weights_lib.save_npz(weights_lib.read_weights(model), str(tmp_path / "s.npz"))
    with tool("convert_weights", f"--input={source}", "--model=fcn16s", "--num_classes=3",
              f"--widths={WIDTHS}", f"--fc_units={TINY_FC}",
              f"--output={tmp_path / 'o.npz'}") as module:
        assert module.convert()["unused"] == ["upscore"]  # the 32s stage's fixed upsampling


@pytest.mark.parametrize("path, default_variant", [("examples/train_nyud.py", "32s"),
                                                   ("examples/train_siftflow.py", "16s")])
def test_nyud_and_siftflow_take_their_variants_sgd_rate(path, default_variant):
    """Every --variant got FCN-32s's rate (walkthrough of 2026-12-06): FCN-16s trained at
    100x, FCN-8s at 1000x the paper's rate."""
    from keras_fcn.training import PAPER_LEARNING_RATES_SUM

    name = os.path.basename(path)[:-3] + "_rates"
    for variant in ("32s", "16s", "8s"):
        with script(path, name, f"--variant={variant}", "--optimizer=sgd") as module:
            rate = module.recipe_learning_rate(tiny=False)
            assert rate == pytest.approx(PAPER_LEARNING_RATES_SUM[variant] * module.PIXELS)
    with script(path, name, "--learning_rate=0.25") as module:
        assert module.recipe_learning_rate(tiny=False) == 0.25
        assert module.FLAGS.variant == default_variant
