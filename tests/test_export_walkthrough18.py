"""tools/export.py and the .keras loader after walkthrough 18b (CamVid): an --input_size other
than the training size is refused unless --any_input_size, --overwrite removes the files of a
previous export under the same name (and nothing else), and a .tflite given as a Keras model is
named as such."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_fcn.labels import ModelLabels
from keras_fcn.weights import load_model_file
from tiny import saved_raw_rgb_fcn
from tool_flags import one_error_line, run_in_process, tool

NUM_CLASSES = 3


def _run_with_labels(tmp_path, image_size):
    run = tmp_path / "run"
    run.mkdir()
    ModelLabels(num_classes=NUM_CLASSES, image_size=image_size).write(str(run / "labels.json"))
    return [f"--model={run / 'best.keras'}", f"--output_dir={tmp_path / 'out'}",
            "--quantizations=float16", "--nosaved_model"], run / "labels.json"


def test_input_size_other_than_the_training_size_is_refused(tmp_path):
    base, labels = _run_with_labels(tmp_path, (24, 40))
    with tool("export", *base, "--input_size=96x160") as t:
        with pytest.raises(ValueError) as error:
            t.check_flags()
    assert str(error.value) == (
        f"--input_size=96x160 is not the training size 24x40 that {labels} records: the model "
        "would see objects at 4x the scale it learned. Leave --input_size out (the default is "
        "the training size), or pass --any_input_size to export at 96x160 anyway. Received: "
        "--input_size='96x160'")
    with tool("export", *base, "--input_size=24,80") as t:
        with pytest.raises(ValueError, match=r"at 1x in height, 2x in width the scale"):
            t.check_flags()
    with tool("export", *base, "--input_size=40x24") as t:
        with pytest.raises(ValueError, match=rf"^--input_size=40x24 has H and W swapped \(HxW: "
                                             rf"height first\) against the training size 24x40 "
                                             rf"that {labels} records: photos would be "
                                             r"squashed\. Leave --input_size out"):
            t.check_flags()
    with tool("export", *base, "--input_size=160x96") as t:  # the photos' 96x160, swapped
        with pytest.raises(ValueError, match=r"^--input_size=160x96 has H and W swapped .* "
                                             r"photos would be squashed; 96x160 would still "
                                             r"see objects at 4x the scale it learned\. Leave"):
            t.check_flags()
    for given in ("24x40", "24,40"):  # the training size itself, either spelling
        with tool("export", *base, f"--input_size={given}") as t:
            assert t.check_flags() == ((24, 40), None, None)
    with tool("export", *base, "--input_size=96x160", "--any_input_size") as t:
        assert t.check_flags() == ((96, 160), None, None)


def test_cli_refuses_another_size_in_one_line_and_native_runs_take_any(tmp_path):
    base, _ = _run_with_labels(tmp_path, (24, 40))
    done = run_in_process("tools/export.py", *base, "--input_size=48x80")
    assert one_error_line(done).startswith("error: --input_size=48x80 is not the training "
                                           "size 24x40")
    ModelLabels(num_classes=NUM_CLASSES).write(str(tmp_path / "run" / "labels.json"))
    with tool("export", *base, "--input_size=48x80") as t:  # no training size: any size
        assert t.check_flags() == ((48, 80), None, None)


def _previous_export(out, name):
    """The files the tool writes for ``name`` (4 variants, --check, a SavedModel)."""
    os.makedirs(out / f"{name}_saved_model" / "variables")
    (out / f"{name}_saved_model" / "saved_model.pb").write_bytes(b"old")
    for variant in ("float32", "float16", "dynamic_int8", "int8"):
        (out / f"{name}_{variant}.tflite").write_bytes(b"old")
        (out / f"{name}_{variant}.json").write_text("{}")
    (out / f"{name}_check.md").write_text("old report")
    (out / f"{name}_check.json").write_text("{}")


def test_overwrite_removes_the_previous_export_of_the_name_and_nothing_else(tmp_path, capsys):
    _, path = saved_raw_rgb_fcn(tmp_path, NUM_CLASSES, seed=0)
    out = tmp_path / "out"
    out.mkdir()
    _previous_export(out, "tiny")
    user = {"notes.txt": "mine", "other_int8.tflite": "another export", "tiny_int8.tflite.bak":
            "a copy", "tiny_extra.json": "{}"}
    for name, text in user.items():
        (out / name).write_text(text)
    with tool("export", f"--model={path}", f"--output_dir={out}", "--name=tiny",
              "--quantizations=float16", "--nosaved_model", "--input_size=32x32",
              "--overwrite") as t:
        t.main(["prog"])
    printed = capsys.readouterr().out
    assert ("--overwrite: removed 9 file(s) of a previous export named 'tiny': tiny_check.md, "
            "tiny_check.json, tiny_float32.tflite, tiny_float32.json, tiny_dynamic_int8.tflite, "
            "tiny_dynamic_int8.json, tiny_int8.tflite, tiny_int8.json, tiny_saved_model\n"
            in printed)
    left = {n for n in os.listdir(out) if not n.startswith(".")}
    assert left == {"tiny_float16.tflite", "tiny_float16.json", *user}
    for name, text in user.items():
        assert (out / name).read_text() == text
    assert (out / "tiny_float16.tflite").read_bytes() != b"old"


def test_overwrite_leaves_a_user_folder_named_like_a_saved_model(tmp_path):
    out = tmp_path / "out"
    (out / "m_saved_model").mkdir(parents=True)
    (out / "m_saved_model" / "photo.png").write_bytes(b"mine")
    (out / "m_int8.tflite").write_bytes(b"old")
    (tmp_path / "m.keras").write_bytes(b"")  # not loaded
    with tool("export", f"--model={tmp_path / 'm.keras'}", f"--output_dir={out}",
              "--quantizations=float16", "--nosaved_model", "--overwrite") as t:
        assert t.previous_export_paths("m") == [str(out / "m_int8.tflite")]


TFLITE_BYTES = b"\x1c\x00\x00\x00TFL3" + bytes(24)


@pytest.mark.parametrize("name", ["m_int8.tflite", "renamed.keras"])
def test_a_tflite_given_as_keras_model_is_named(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(TFLITE_BYTES)
    with pytest.raises(ValueError) as error:
        load_model_file(str(path))
    assert str(error.value) == (
        f"{str(path)!r} is a TFLite model; expected a .keras model file (or a preset name). "
        "Run a .tflite with examples/litert_segment.py or keras_fcn.export.TFLiteRunner.")


def test_predict_names_a_tflite_model_in_one_line(tmp_path):
    model = tmp_path / "fcn8s_int8.tflite"
    model.write_bytes(TFLITE_BYTES)
    frame = tmp_path / "frame.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frame)
    done = run_in_process("tools/predict.py", f"--model={model}", str(frame),
                          f"--output_dir={tmp_path / 'pred'}", positional=True)
    assert one_error_line(done) == (
        f"error: {str(model)!r} is a TFLite model; expected a .keras model file (or a preset "
        "name). Run a .tflite with examples/litert_segment.py or keras_fcn.export.TFLiteRunner.")
