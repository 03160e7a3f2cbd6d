"""Bad input to the tools (evaluate, export, convert_weights) and the LiteRT example: a clear
error naming the flag or file, found before the slow part, and the user's files intact.

Most tests call a tool's ``main`` in-process (the error it raises is what
``keras_fcn.training.cli.run_main`` prints, exiting 2) or run it through run_main in-process
(``tool_flags.run_in_process``); one subprocess per tool checks that end to end.
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_fcn import export
from tiny import saved_raw_rgb_fcn
from tool_flags import load_script, run_in_process, tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3
SIZE = (32, 32)


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return str(path)


def _pairs(folder, count=2, image_hw=SIZE, mask_hw=SIZE, value=1):
    """A list file of ``count`` image/mask pairs under ``folder``."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        _write_png(folder / "images" / f"{i}.png", rng.integers(0, 256, (*image_hw, 3)))
        _write_png(folder / "masks" / f"{i}.png", np.full(mask_hw, value))
        lines.append(f"images/{i}.png masks/{i}.png")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return str(folder / "list.txt")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny 3-class FCN-8s (raw RGB in) saved as .keras."""
    return saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), NUM_CLASSES, seed=0)


@pytest.fixture(scope="module")
def tflite_file(model_file, tmp_path_factory):
    """Its float32 .tflite export, with the sidecar (tools/export.py's)."""
    path = str(tmp_path_factory.mktemp("tflite") / "tiny_float32.tflite")
    export.export_tflite(model_file[0], path, input_size=SIZE)
    return path


# ------------------------------------------------------------------------ tools/evaluate.py --

def test_evaluate_refuses_to_replace_a_checkpoint_before_loading_anything(tmp_path):
    checkpoint = tmp_path / "best.keras"
    checkpoint.write_bytes(b"PK\x03\x04 a model checkpoint")
    before = _md5(checkpoint)
    # --model does not exist: the output is checked first
    with tool("evaluate", f"--model={tmp_path / 'none.keras'}", f"--output={checkpoint}") as t:
        with pytest.raises(FileExistsError, match=r"--output=.*best\.keras.* exists and is not "
                                                  r"the JSON of a previous evaluation; pass "
                                                  r"--overwrite"):
            t.main(["prog"])
    assert _md5(checkpoint) == before


def test_evaluate_output_checks(tmp_path, monkeypatch):
    with tool("evaluate", "--model=m.keras") as t:
        previous = tmp_path / "previous.json"
        previous.write_text(json.dumps({"mean_iu": 0.5, "confusion_matrix": [[1]],
                                        "model": "m.keras", "dataset": "shapes",
                                        "split": "val"}))
        metrics = tmp_path / "metrics.json"  # a training run's metrics: not an evaluation
        metrics.write_text(json.dumps({"mean_iu": 0.5}))
        assert t.is_evaluation_json(previous) and not t.is_evaluation_json(metrics)
        t.check_output(str(previous))  # a previous evaluation is replaced
        with pytest.raises(FileExistsError, match="metrics.json"):
            t.check_output(str(metrics))
        t.check_output(str(metrics), overwrite=True)
        with pytest.raises(ValueError, match=r"is a folder; expected the path of a JSON"):
            t.check_output(str(tmp_path), overwrite=True)
        with pytest.raises(ValueError, match=r"cannot be written: '.*previous\.json' is a "
                                             r"file, not a folder"):
            t.check_output(str(previous / "eval.json"))
        new = tmp_path / "new" / "eval.json"
        t.check_output(str(new))
        assert new.parent.is_dir() and not new.exists()

        def read_only(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("tempfile.mkstemp", read_only)
        with pytest.raises(OSError, match=r"--output=.*eval2\.json' cannot be written in .*"
                                          r"Permission denied"):
            t.check_output(str(tmp_path / "eval2.json"))


@pytest.mark.parametrize("flag, message", [
    ("--max_images=-2", r"--max_images must be >= 0 \(0: all images\). Received: -2"),
    ("--num_classes=-3", r"--num_classes must be >= 0"),
])
def test_evaluate_refuses_negative_counts(tmp_path, flag, message):
    with tool("evaluate", f"--model={tmp_path / 'none.keras'}", flag) as t:
        with pytest.raises(ValueError, match=message):
            t.main(["prog"])


def test_evaluate_compares_class_counts_with_the_model_before_the_data(tmp_path, model_file):
    _, path = model_file
    missing = f"--data_dir={tmp_path / 'no_data'}"  # the data would fail: never reached
    with tool("evaluate", f"--model={path}", "--dataset=folder", missing, "--num_classes=2",
              f"--output={tmp_path / 'e.json'}") as t:
        with pytest.raises(ValueError, match=r"--num_classes=2 but the model .* predicts 3 "
                                             r"classes .* pass --num_classes=3"):
            t.main(["prog"])
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.keras").write_bytes(open(path, "rb").read())
    (folder / "labels.json").write_text('{"num_classes": 2}')
    with tool("evaluate", f"--model={folder / 'model.keras'}", "--dataset=folder",
              missing) as t:
        with pytest.raises(ValueError, match=r"The labels file '.*labels\.json' names 2 "
                                             r"classes but the model .* predicts 3"):
            t.main(["prog"])


def test_evaluate_names_a_damaged_model_before_loading_data(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with tool("evaluate", f"--model={bad}", "--dataset=folder",
              f"--data_dir={tmp_path / 'no_data'}", f"--output={tmp_path / 'e.json'}") as t:
        with pytest.raises(ValueError, match=r"Cannot load the model file '.*bad\.keras': it "
                                             r"is not a zip archive"):
            t.main(["prog"])


def test_evaluate_cli_exits_2_and_keeps_the_file(tmp_path, model_file):
    checkpoint = tmp_path / "best.keras"
    checkpoint.write_bytes(open(model_file[1], "rb").read())
    before = _md5(checkpoint)
    # in this process, as its __main__ block runs it (test_cli_errors: each script's block)
    run = run_in_process("tools/evaluate.py", f"--model={model_file[1]}", "--max_images=1",
                         f"--output={checkpoint}")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert f"error: --output='{checkpoint}' exists and is not the JSON" in run.stderr
    assert _md5(checkpoint) == before


def test_evaluate_cli_names_a_two_headed_model(tmp_path):
    """A SIFT Flow model (two heads) was checked against its labels file as if its geometric
    head were the model's output: "names 33 classes but the model predicts 3; fix or remove
    that file" (walkthrough of 2026-12-06)."""
    from keras_fcn.models.multimodal import build_two_headed_fcn

    two = build_two_headed_fcn(num_semantic=5, num_geometric=3, weights=None,
                               widths=(4, 4, 8, 8, 8), fc_units=8)
    two.save(tmp_path / "two.keras")
    run = run_in_process("tools/evaluate.py", f"--model={tmp_path / 'two.keras'}",
                         "--dataset=shapes", "--max_images=1")
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(
        "error: tools/evaluate.py does not score SIFT Flow models (it reads no SIFT Flow data): "
        "its recipe does, on both heads, at the end of training; to score a trained model "
        "without training it: python examples/train_siftflow.py "), run.stderr
    assert errors[0].endswith("two.keras', outputs ['geometric', 'semantic']"), run.stderr


# -------------------------------------------------------------------------- tools/export.py --

@pytest.mark.parametrize("flags_, message", [
    (["--quantizations=int8"], r"--quantizations=int8 \(full int8\) needs --calibration_data"),
    (["--quantizations=int8", "--calibration_data=DATA", "--num_calibration=0"],
     r"--num_calibration must be >= 1. Received: 0"),
    (["--quantizations=float32", "--check=DATA", "--num_check_images=-1"],
     r"--num_check_images must be >= 0 \(0: all\). Received: -1"),
    (["--quantizations=float32", "--runs=0"], r"--runs must be >= 1. Received: 0"),
    (["--quantizations=float32", "--num_threads=-5"], r"--num_threads must be >= 1"),
    (["--quantizations=float32", "--name=../../escape/evil"],
     r"--name must be a plain file name .* Received: '\.\./\.\./escape/evil'"),
    (["--quantizations=float32", "--check=MISSING"],
     r"--check=.*missing.*: Image folder or list file not found"),
    (["--quantizations=int8", "--calibration_data=IMAGE"],
     r"--calibration_data=.*0\.png.* is an image; expected a folder of images or a list file"),
    (["--quantizations=int8", "--calibration_data=BINARY"],
     r"--calibration_data=.* is not a text file .*; expected a folder of images or a list"),
    (["--quantizations=int8", "--calibration_data=TEXT"],
     r"garbage\.txt:1: image file not found: .*notapng"),
    (["--quantizations=int8", "--calibration_data=CORRUPT"],
     r"--calibration_data=.*: image file '.*1\.png' is unreadable"),
    (["--quantizations=float32", "--check=MISMATCH"],
     r"image '.*0\.png' is 32x32 \(HxW\) but mask '.*0\.png' is 16x16"),
    (["--quantizations=flaot16"], r"--quantizations accepts float32, .* Received: \['flaot16'\]"),
    (["--input_size=0x32"], r"--input_size must be 'H,W' or 'S' with positive sizes"),
])
def test_export_checks_flags_before_loading_the_model(tmp_path, flags_, message):
    data = tmp_path / "data"
    list_file = _pairs(data)
    mismatch = _pairs(tmp_path / "mismatch", mask_hw=(16, 16))
    binary = tmp_path / "garbage.bin"
    binary.write_bytes(bytes(range(128, 256)))
    text = tmp_path / "garbage.txt"
    text.write_text("notapngnotapng\n")
    corrupt = tmp_path / "corrupt"
    _pairs(corrupt)
    (corrupt / "images" / "1.png").write_bytes(b"not a png")
    names = {"CORRUPT": str(corrupt / "images"), "DATA": list_file,
             "MISSING": str(tmp_path / "missing"), "MISMATCH": mismatch,
             "IMAGE": str(data / "images" / "0.png"), "BINARY": str(binary), "TEXT": str(text)}
    argv = [f"{f.split('=')[0]}={names.get(f.split('=')[1], f.split('=')[1])}"
            for f in flags_]
    out = tmp_path / "out"
    # the model does not exist: a check made after loading it would fail on that instead
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", *argv) as t:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            t.main(["prog"])
    assert not out.exists()


def test_export_checks_the_model_flags_and_existing_files_before_writing(tmp_path,
                                                                         model_file):
    _, path = model_file
    out = tmp_path / "out"
    base = [f"--model={path}", f"--output_dir={out}", "--input_size=32x32", "--name=tiny",
            "--quantizations=float32,float16"]
    with tool("export", *base, "--ignore_label=1") as t:
        with pytest.raises(ValueError, match=r"--ignore_label: ignore_label=1 is a class id; "
                                             r"expected a value outside \[0, 3\)"):
            t.main(["prog"])
    assert not out.exists()
    out.mkdir()
    (out / "tiny_float16.tflite").write_bytes(b"an earlier export")
    with tool("export", *base) as t:
        with pytest.raises(FileExistsError, match=r"tiny_float16\.tflite' exists; pass "
                                                  r"--overwrite"):
            t.main(["prog"])
    assert sorted(os.listdir(out)) == ["tiny_float16.tflite"]  # no SavedModel, no float32
    assert (out / "tiny_float16.tflite").read_bytes() == b"an earlier export"
    # a mask value that is no class id of the model: named before anything is written
    big = _pairs(tmp_path / "big", value=7)
    with tool("export", *base, f"--output_dir={tmp_path / 'out2'}", f"--check={big}") as t:
        with pytest.raises(ValueError, match=r"mask '.*0\.png' has value 7 at \(0, 0\); "
                                             r"expected 0\.\.2 \(num_classes=3\) or "
                                             r"ignore label 255"):
            t.main(["prog"])
    assert not (tmp_path / "out2").exists()


def test_export_cli_exits_2_without_writing(tmp_path, model_file):
    out = tmp_path / "out"
    run = run_in_process("tools/export.py", f"--model={model_file[1]}", f"--output_dir={out}",
                         "--input_size=32x32")  # int8 is a default variant; in this process
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "error: --quantizations=int8 (full int8) needs --calibration_data" in run.stderr
    assert not out.exists()


# ------------------------------------------------------------------ keras_fcn.export images --

def test_compare_tflite_refuses_an_image_and_mask_of_different_sizes(tmp_path, model_file,
                                                                     tflite_file):
    # 32x32 images, one 16x16 mask: it was resized to fit and scored
    list_file = _pairs(tmp_path / "data")
    _write_png(tmp_path / "data" / "masks" / "1.png", np.ones((16, 16)))
    pairs = export.read_list(list_file)
    with pytest.raises(ValueError, match=r"image '.*images/1\.png' is 32x32 \(HxW\) but mask "
                                         r"'.*masks/1\.png' is 16x16"):
        export.compare_tflite(model_file[0], {"float32": tflite_file}, pairs, runs=1)
    (tmp_path / "data" / "images" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"image file '.*images/1\.png' is unreadable"):
        export.compare_tflite(model_file[0], {"float32": tflite_file}, pairs, runs=1)
    with pytest.raises(ValueError, match=r"image file '.*images/1\.png' is unreadable"):
        export.check_pairs(pairs)


def test_load_pair_resizes_both_only_when_they_match(tmp_path):
    image = _write_png(tmp_path / "a.png", np.full((20, 30, 3), 100))
    mask = _write_png(tmp_path / "m.png", np.tile(np.arange(30) // 10, (20, 1)))
    got_image, got_mask = export.load_pair(image, mask, (10, 15), num_classes=3)
    assert got_image.shape == (10, 15, 3) and got_mask.shape == (10, 15)
    assert sorted(np.unique(got_mask)) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"mask '.*m\.png' has value 2 at \(0, 20\); "
                                         r"expected 0\.\.1 \(num_classes=2\) or ignore label 255"):
        export.load_pair(image, mask, num_classes=2, ignore_label=255)


# ----------------------------------------------------------------- tools/convert_weights.py --

def test_convert_weights_names_bad_widths(tmp_path, capsys):
    output = tmp_path / "out.keras"
    with tool("convert_weights", "--input=x.pth", "--model=fcn8s", f"--output={output}",
              "--widths=a,b") as t:
        assert t.main(["prog"]) == 2
        for bad in (["a", "b"], ["8", "0"], ["8", "1.5"]):
            with pytest.raises(ValueError, match=r"--widths must be comma-separated positive "
                                                 r"integers. Received: widths="):
                t.parse_widths(bad)
        assert t.parse_widths(["4", "8"]) == (4, 8) and t.parse_widths(None) is None
    assert ("convert_weights: error: --widths must be comma-separated positive integers. "
            "Received: widths='a,b'") in capsys.readouterr().err
    assert not output.exists()


# --------------------------------------------------------------- examples/litert_segment.py --

@pytest.fixture
def app():
    return load_script(os.path.join("examples", "litert_segment.py"), "cli_tools_litert")


def test_litert_app_never_overwrites_its_input_and_asks_before_replacing(app, tmp_path,
                                                                         tflite_file):
    photo = _write_png(tmp_path / "photo.png", np.full((40, 40, 3), 90))
    before = _md5(photo)
    for extra in ([], ["--overwrite"]):
        with pytest.raises(ValueError, match=r"The output '.*photo\.png' is the input image"):
            app.main(["app", tflite_file, photo, photo, *extra])
        with pytest.raises(ValueError, match=r"is the model's sidecar"):
            app.main(["app", tflite_file, photo, tflite_file[:-7] + ".json", *extra])
    assert _md5(photo) == before
    out = _write_png(tmp_path / "out.png", np.zeros((4, 4, 3)))
    old = _md5(out)
    with pytest.raises(FileExistsError, match=r"'.*out\.png' exists; pass --overwrite"):
        app.main(["app", tflite_file, photo, out])
    assert _md5(out) == old
    assert app.main(["app", tflite_file, photo, out, "--overwrite"]) == 0
    assert np.asarray(Image.open(out)).shape == (40, 40, 3)  # the photo's size, not the model's
    nested = tmp_path / "new" / "folder" / "out.png"  # the folder is created
    assert app.main(["app", tflite_file, photo, str(nested)]) == 0 and nested.exists()


def test_litert_app_checks_the_sidecar_and_the_model(app, tmp_path, tflite_file):
    photo = _write_png(tmp_path / "photo.png", np.full((40, 40, 3), 90))
    meta = json.loads(open(tflite_file[:-7] + ".json").read())
    model = tmp_path / "m.tflite"
    model.write_bytes(open(tflite_file, "rb").read())
    sidecar = tmp_path / "m.json"
    cases = [
        ("{}", r"The sidecar '.*m\.json' lacks \['input', 'class_names', 'palette'\]"),
        ("{bad", r"The sidecar '.*m\.json' is not valid JSON"),
        (json.dumps({**meta, "class_names": ["a", "b"], "palette": meta["palette"][:2],
                     "num_classes": 2}),
         r"The sidecar '.*m\.json' names 2 classes but '.*m\.tflite' predicts 3"),
        (json.dumps({**meta, "class_names": ["a", "b"]}),
         r"The sidecar '.*m\.json' is not usable: it gives 2 class names and 3 palette "
         r"colours for 3 classes"),
        (json.dumps({**meta, "input": {**meta["input"], "shape": [1, 8, 8, 3]}}),
         r"The sidecar '.*m\.json' gives the input shape \[1, 8, 8, 3\] but '.*m\.tflite' "
         r"takes \[1, 32, 32, 3\]"),
    ]
    for text, message in cases:
        sidecar.write_text(text)
        with pytest.raises(ValueError, match=message):
            app.main(["app", str(model), photo, str(tmp_path / "o.png")])
    sidecar.write_text(json.dumps(meta))
    model.write_bytes(b"not a flatbuffer" * 4)
    with pytest.raises(ValueError, match=r"'.*m\.tflite' is not a usable \.tflite model"):
        app.main(["app", str(model), photo, str(tmp_path / "o.png")])
    assert not (tmp_path / "o.png").exists()


def test_litert_app_exits_2_and_keeps_the_photo(tmp_path, tflite_file):
    photo = _write_png(tmp_path / "photo.png", np.full((40, 40, 3), 90))
    before = _md5(photo)
    run = _run(os.path.join(ROOT, "examples", "litert_segment.py"), tflite_file, photo, photo,
               "--overwrite")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert f"error: The output '{photo}' is the input image" in run.stderr
    assert _md5(photo) == before


# Review 7: tools/convert_weights.py's flag errors.


@pytest.mark.slow
def test_convert_weights_bad_flag_is_one_line_and_status_2(tmp_path):
    """absl's own flag error: "FATAL Flags parsing error" and a second line, exit status 1."""
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                        "convert_weights.py")
    result = subprocess.run(
        [sys.executable, tool, "--input=x.pth", "--model=fcn4s", f"--output={tmp_path}/o.keras"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error", "FATAL"))]
    assert lines == ["error: flag --model=fcn4s: value should be one of "
                     "<fcn32s|fcn16s|fcn8s|fcn8s_at_once>. Pass --helpfull to list the flags."]


# Review 7: reproducers of bugs that gave a wrong result or an unclear error.


def test_litert_app_reads_16_bit_grey_and_exif_as_predict_does(app, tmp_path):
    """A 16-bit grey photo was clipped to white (PIL's convert) where tools/predict.py reads
    the high byte; a phone photo's EXIF orientation was ignored (predict applies it)."""
    from keras_fcn.data.arrays import read_image

    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((4, 6), 200 * 256 + 99, np.uint16)).save(grey)
    with Image.open(grey) as opened:
        photo = app.read_photo(opened)
    np.testing.assert_array_equal(np.asarray(photo), read_image(grey, exif_transpose=True))
    assert np.asarray(photo)[0, 0].tolist() == [200, 200, 200]

    rotated = tmp_path / "phone.jpg"
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.fromarray(pixels).save(rotated, exif=exif, quality=100)
    with Image.open(rotated) as opened:
        photo = app.read_photo(opened)
    assert photo.size == (4, 8)  # (W, H) upright, as predict reads it
    np.testing.assert_array_equal(np.asarray(photo), read_image(rotated, exif_transpose=True))


def test_litert_app_names_a_missing_model_and_a_sidecar_of_another_model(app, tmp_path):
    """A missing model was reported as its missing sidecar; a sidecar whose input dtype or
    quantization is not the model's quantized the pixels wrongly, without an error."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    missing = str(tmp_path / "none.tflite")
    with pytest.raises(FileNotFoundError, match=r"^The model '.*none\.tflite' is missing\.$"):
        app.main(["app", missing, str(photo), str(tmp_path / "out.png")])
    meta = {"input": {"shape": [1, 8, 8, 3], "dtype": "uint8",
                      "quantization": {"scale": 1.0, "zero_point": 0}},
            "class_names": ["a", "b"], "palette": [[0, 0, 0], [1, 1, 1]]}
    detail = {"shape": np.array([1, 8, 8, 3]), "dtype": np.uint8, "quantization": (1.0, 0)}
    output = {"shape": np.array([1, 8, 8, 2])}
    app.check_model(meta, "m.tflite", detail, output)  # the same: accepted
    with pytest.raises(ValueError, match=r"gives the input quantization \(scale 1\.0, zero "
                                         r"point 0\) but 'm\.tflite' has \(scale 0\.5, zero "
                                         r"point 3\)"):
        app.check_model(meta, "m.tflite", {**detail, "quantization": (0.5, 3)}, output)
    with pytest.raises(ValueError, match=r"gives the input dtype uint8 but 'm\.tflite' takes "
                                         r"int8"):
        app.check_model(meta, "m.tflite", {**detail, "dtype": np.int8}, output)


def test_evaluate_colour_mask_folder_matches_numpy(tmp_path, model_file):
    """--dataset=folder with a classes.json of colour masks (no --num_classes) and JPEG
    images: the confusion matrix is numpy's of the model's argmax on PIL-decoded pixels (the
    pixels tools/predict.py reads; tf.data's fast IDCT scored others before)."""
    model, path = model_file
    colours = np.array([(128, 128, 128), (128, 0, 0), (192, 192, 128), (0, 0, 0)], np.uint8)
    (tmp_path / "classes.json").write_text(json.dumps({
        "classes": ["Sky", "Building", "Pole"], "palette": colours[:3].tolist(),
        "mask_format": "rgb", "void_color": [0, 0, 0]}))
    rng = np.random.default_rng(5)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for i in range(2):
        os.makedirs(tmp_path / "val" / "images", exist_ok=True)
        image = tmp_path / "val" / "images" / f"f{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (*SIZE, 3)).astype(np.uint8)).save(image)
        labels = rng.integers(0, 4, SIZE)  # 3: void
        _write_png(tmp_path / "val" / "masks" / f"f{i}.png", colours[labels])
        with Image.open(image) as opened:
            pixels = np.asarray(opened.convert("RGB"), np.float32)
        predicted = model.predict(pixels[None], verbose=0)[0].argmax(-1)
        keep = labels < NUM_CLASSES
        expected += np.bincount(labels[keep] * NUM_CLASSES + predicted[keep],
                                minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    output = tmp_path / "e.json"
    with tool("evaluate", f"--model={path}", "--dataset=folder", f"--data_dir={tmp_path}",
              f"--output={output}") as t:
        t.main(["prog"])
    results = json.loads(output.read_text())
    assert results["class_names"] == ["Sky", "Building", "Pole"]
    np.testing.assert_array_equal(results["confusion_matrix"], expected)


def test_evaluate_given_ignore_label_wins_over_the_models_labels(tmp_path):
    """A model trained on colour masks (its labels: ignore label 3) evaluated on index masks
    that mark void 255: an explicit --ignore_label=255 was ignored (the labels' 3 won) and the
    run failed on the first 255; left out, the labels' value is used."""
    from keras_fcn.labels import ModelLabels

    _, path = saved_raw_rgb_fcn(tmp_path, NUM_CLASSES, seed=0)
    ModelLabels(NUM_CLASSES, ignore_label=3).write(ModelLabels.sidecar_path(path))
    data = tmp_path / "data"
    list_file = _pairs(data, count=1, value=1)
    mask = np.ones(SIZE, np.uint8)
    mask[:10] = 255  # void: 10 of the 32 rows
    _write_png(data / "masks" / "0.png", mask)
    os.replace(list_file, data / "val.txt")
    output = tmp_path / "e.json"
    done = run_in_process("tools/evaluate.py", f"--model={path}", "--dataset=folder",
                          f"--data_dir={data}", f"--output={output}", "--ignore_label=255")
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.sum(json.loads(output.read_text())["confusion_matrix"]) == 22 * 32
    with tool("evaluate", f"--model={path}") as t:
        labels = ModelLabels.for_model(path)
        assert (t.ignore_label(None, labels), t.ignore_label(255, labels)) == (3, 255)
        assert t.ignore_label(None, None) == 255 and t.FLAGS.ignore_label is None
    done = run_in_process("tools/evaluate.py", f"--model={path}", "--dataset=folder",
                          f"--data_dir={data}", f"--output={output}")
    assert done.returncode == 2 and "has value 255" in done.stderr, done.stderr[-2000:]
    assert "ignore label 3" in done.stderr


def test_evaluate_cli_names_a_jpeg_mask_exits_2(tmp_path, model_file):
    list_file = _pairs(tmp_path, count=1)
    Image.open(tmp_path / "masks" / "0.png").save(tmp_path / "masks" / "0.jpg")
    (tmp_path / "val.txt").write_text(open(list_file).read().replace(".png\n", ".jpg\n")
                                      .replace("images/0.jpg", "images/0.png"))
    run = run_in_process("tools/evaluate.py", f"--model={model_file[1]}", "--dataset=folder",
                         f"--data_dir={tmp_path}", f"--output={tmp_path / 'e.json'}")
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: mask '{tmp_path / 'masks' / '0.jpg'}' is a JPEG file; "
                     "mask_format='index' masks must be PNG or BMP files (JPEG is lossy: near "
                     "every edge its pixels are not the class ids that were saved); save it as "
                     "PNG"], run.stderr[-2000:]
    assert "Traceback" not in run.stderr and not os.path.exists(tmp_path / "e.json")


def test_evaluate_shapes_are_drawn_at_the_size_of_the_models_run(tmp_path):
    """A model trained with --shapes_size=32 was evaluated on 64-px shapes (the default):
    the size now comes from the run's config.json (a staged run's too), --shapes_size wins."""
    run = tmp_path / "run"
    (run / "fcn8s").mkdir(parents=True)
    _, path = saved_raw_rgb_fcn(run, 4, seed=0)  # shapes: 3 shapes and the background
    (run / "config.json").write_text(json.dumps({"flags": {"shapes_size": 32}}))
    with tool("evaluate", f"--model={path}") as t:
        assert t.shapes_size(0, path) == 32
        assert t.shapes_size(0, str(run / "fcn8s" / "model.keras")) == 32  # a stage's model
        assert t.shapes_size(48, path) == 48
        assert t.shapes_size(0, str(tmp_path / "tiny.keras")) == 64  # no run beside it
    pixels = {}
    for flags_ in ([], ["--shapes_size=40"]):
        output = tmp_path / f"eval{len(flags_)}.json"
        done = run_in_process("tools/evaluate.py", f"--model={path}", "--num_val=2",
                              f"--output={output}", *flags_)
        assert done.returncode == 0, done.stderr[-2000:]
        side = 40 if flags_ else 32
        assert f"(2 images of {side}x{side} px, native size)" in done.stdout
        pixels[side] = np.sum(json.loads(output.read_text())["confusion_matrix"])
    # every labelled pixel of the two images is counted once (void outlines are not)
    assert 0.5 * 2 * 32 * 32 < pixels[32] <= 2 * 32 * 32 < pixels[40] <= 2 * 40 * 40
    with tool("evaluate", f"--model={path}", "--shapes_size=-1") as t:
        with pytest.raises(ValueError, match=r"--shapes_size must be >= 0 .* Received: -1"):
            t.main(["prog"])


def test_evaluate_shapes_are_the_images_the_models_run_validated_on(tmp_path):
    """tools/evaluate.py drew 50 shapes images of seed 0 for a run validated on --num_val=8
    (another figure than its metrics.json): the run's --num_val and --seed are taken too."""
    run = tmp_path / "run"
    run.mkdir()
    _, path = saved_raw_rgb_fcn(run, 4, seed=0)
    (run / "config.json").write_text(json.dumps(
        {"flags": {"shapes_size": 32, "num_val": 3, "seed": 5}}))
    with tool("evaluate", f"--model={path}") as t:
        assert (t.run_value("num_val", path), t.run_value("seed", path, 0)) == (3, 5)
        assert t.run_value("num_val", str(tmp_path / "tiny.keras")) == 50  # no run beside it
    matrices = {}
    for flags_ in ([], ["--seed=5", "--num_val=3"], ["--num_val=2"]):
        output = tmp_path / f"eval{len(flags_)}.json"
        done = run_in_process("tools/evaluate.py", f"--model={path}", f"--output={output}",
                              *flags_)
        assert done.returncode == 0, done.stderr[-2000:]
        count = 2 if flags_ == ["--num_val=2"] else 3
        assert f"({count} images of 32x32 px, native size)" in done.stdout
        matrices[len(flags_)] = json.loads(output.read_text())["confusion_matrix"]
    assert matrices[0] == matrices[2]  # the run's images, as with its flags given
