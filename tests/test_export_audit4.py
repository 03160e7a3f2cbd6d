"""Regression tests for the export audit (round 4): overwrite of a SavedModel folder, int8
calibration (input range pinned, non-photo data refused), the mean IU gate, TFLiteRunner input
checks, multi-output models, tools/export.py flags and the LiteRT example's output size.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

import keras
import tensorflow as tf

from keras_fcn import export
from keras_fcn.models import build_two_headed_fcn
from tiny import TINY_FC, TINY_WIDTHS, file_digests, tiny_fcn
from tool_flags import load_script, tool

SIZE = (32, 32)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return tiny_fcn("8s", 3, include_preprocessing=True)


@pytest.fixture(scope="module")
def model_path(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def float32_tflite(model):
    return export.convert_to_tflite(model, input_size=SIZE)


def _images(count, high=256, seed=0):
    return np.random.default_rng(seed).integers(0, high, (count, *SIZE, 3)).astype("uint8")


def _write_images(folder, images, mode="RGB"):
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image if mode == "RGB" else image[..., 0], mode=mode).save(
            os.path.join(folder, f"{i}.png"))
    return str(folder)


# ------------------------------------------------- 1. overwrite replaces only a SavedModel --

def test_saved_model_overwrite_replaces_only_an_earlier_saved_model(model, model_path,
                                                                   tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "best.keras"
    checkpoint.write_bytes(open(model_path, "rb").read())
    (run / "notes.json").write_text("{}")
    before = file_digests(run)
    for target in (run, checkpoint):  # the run folder, or the checkpoint itself
        with pytest.raises(ValueError, match=(
                rf"^export_dir='{target}' is or holds the model being exported "
                rf"\('{checkpoint}'\); choose another export_dir\.$")):
            export.export_saved_model(str(checkpoint), str(target), overwrite=True)
    assert file_digests(run) == before
    # a folder of other exports (a .tflite beside an earlier SavedModel): named, kept
    out = tmp_path / "export"
    first = export.export_saved_model(model, str(out), include_probabilities=False)
    assert first["output"] == "class_ids (N, H, W) uint8: the class id of each pixel"
    (out / "m_int8.tflite").write_bytes(b"tflite")
    with pytest.raises(ValueError, match=(
            r"^overwrite=True replaces only an earlier SavedModel folder \(entries "
            r"\['saved_model.pb', 'variables', 'assets', 'fingerprint.pb'\]\), but it holds "
            rf"other entries \['m_int8.tflite'\]; .* Received: export_dir='{out}'$")):
        export.export_saved_model(model, str(out), overwrite=True)
    assert (out / "m_int8.tflite").read_bytes() == b"tflite"
    (tmp_path / "half" / "variables").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"but it has no saved_model.pb; .* Received: "
                                         rf"export_dir='{tmp_path / 'half'}'"):
        export.export_saved_model(model, str(tmp_path / "half"), overwrite=True)
    with pytest.raises(ValueError, match=r"but it holds other entries \['best.keras', "
                                         r"'notes.json'\]"):
        export.export_saved_model(model, str(run), overwrite=True)
    with pytest.raises(ValueError, match=rf"but export_dir='{run / 'notes.json'}' is not a "
                                         "folder; choose another export_dir"):
        export.export_saved_model(model, str(run / "notes.json"), overwrite=True)
    assert file_digests(run) == before
    # an earlier SavedModel alone is replaced; the sidecar describes the signature (finding 7)
    os.remove(out / "m_int8.tflite")
    meta = export.export_saved_model(model, str(out), input_size=SIZE, overwrite=True)
    assert meta["input"]["shape"] == [None, *SIZE, 3]
    assert meta["output"] == ("class_ids (N, H, W) uint8: the class id of each pixel; "
                              "probabilities (N, H, W, num_classes) float32: the softmax of "
                              "the logits")
    on_disk = json.loads((out / export.SAVED_MODEL_METADATA).read_text())
    assert on_disk["output"] == meta["output"]
    assert set(on_disk["outputs"]) == {"class_ids", "probabilities"}


def test_cli_overwrite_refuses_a_foreign_saved_model_folder(model_path, tmp_path):
    out = tmp_path / "out"
    (out / "tiny_saved_model").mkdir(parents=True)
    (out / "tiny_saved_model" / "results.csv").write_text("1,2\n")
    with tool("export", f"--model={model_path}", f"--output_dir={out}", "--name=tiny",
              "--quantizations=", "--overwrite") as t:
        with pytest.raises(ValueError, match=r"it holds other entries \['results.csv'\]"):
            t.main(["prog"])
    assert os.listdir(out / "tiny_saved_model") == ["results.csv"]


# --------------------------------------------- 2. int8 calibration: input range, photos --

def test_pin_input_range_sets_one_black_and_one_white_pixel():
    image = np.full((1, 2, 3, 3), 40.0, np.float32)
    pinned = export.pin_input_range(image)
    assert pinned[0, 0, 0].tolist() == [0.0] * 3 and pinned[0, -1, -1].tolist() == [255.0] * 3
    assert (pinned == 40.0).sum() == 3 * 6 - 6 and (image == 40.0).all()  # a copy


@pytest.mark.parametrize("int8_io, zero_point", [("uint8", 0), ("int8", -128)])
def test_int8_input_scale_is_one_after_calibrating_on_dark_images(model, int8_io,
                                                                  zero_point):
    dark = _images(4, high=60)  # max 59: the calibration range alone gives a scale ~0.23
    flatbuffer = export.convert_to_tflite(model, input_size=SIZE, quantization="int8",
                                          int8_io=int8_io, representative_data=list(dark))
    quantization = export.TFLiteRunner(flatbuffer).input_info()["quantization"]
    assert abs(quantization["scale"] - 1.0) < 1e-6
    assert quantization["zero_point"] == zero_point


@pytest.mark.parametrize("data, message", [
    (_images(2).astype("float32") / 255,
     r"^representative_data must be RGB photos with raw pixel values 0\.\.255, as the exported "
     r"model takes them \(not normalized or preprocessed\)\. Received: representative_data "
     r"item 0 of dtype float32 with values in \[0, 1\]$"),
    (_images(2).astype("float32") / 127.5 - 1,
     r"Received: representative_data item 0 of dtype float32 with values in \[-1, 1\]$"),
    (_images(2).astype("int32") + 300,
     r"Received: representative_data item 0 of dtype int32 with values in \[300, 555\]$"),
])
def test_calibration_refuses_data_that_is_not_rgb_0_255(model, data, message):
    with pytest.raises(ValueError, match=message):
        export.convert_to_tflite(model, input_size=SIZE, quantization="int8",
                                 representative_data=data)


def test_calibration_refuses_mask_files_and_the_cli_decodes_them_first(model, tmp_path):
    masks = _write_images(tmp_path / "annot", _images(2, high=11), mode="L")
    with pytest.raises(ValueError, match=(
            rf"^image file '{masks}/0.png' is a single-channel \(mode 'L'\) image, like a "
            r"label mask; representative_data must be RGB photos with raw pixel values "
            r"0\.\.255\.$")):
        export.convert_to_tflite(model, input_size=SIZE, quantization="int8",
                                 representative_data=masks)
    out = tmp_path / "out"
    # the model does not exist: the calibration data is refused before it is loaded
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", "--quantizations=int8", f"--calibration_data={masks}") as t:
        with pytest.raises(ValueError, match=rf"^--calibration_data='{masks}': image file "
                                             r"'.*0\.png' is a single-channel \(mode 'L'\)"):
            t.main(["prog"])
    assert not out.exists()


# ---------------------------------------------- 3. the mean IU gate cannot pass unmeasured --

def _pairs(folder, masked):
    """A list file of one image per entry of ``masked``, with a mask where True."""
    lines = []
    for i, (image, has_mask) in enumerate(zip(_images(len(masked), seed=3), masked)):
        _write_images(folder / "img" / str(i), [image])
        line = f"img/{i}/0.png"
        if has_mask:
            _write_images(folder / "ann" / str(i), [np.zeros(image.shape, np.uint8)], mode="L")
            line += f" ann/{i}/0.png"
        lines.append(line)
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return str(folder / "list.txt")


def test_mean_iu_gate_refuses_images_without_masks(model, float32_tflite, tmp_path):
    mixed = export.read_list(_pairs(tmp_path / "mixed", [True, False, True]))
    with pytest.raises(ValueError, match=(
            r"^1 of 3 images have no mask, so mean IU cannot be measured: give a mask on every "
            rf"line or on none\. Images without a mask: \['{tmp_path}/mixed/img/1/0\.png'\]$")):
        export.compare_tflite(model, {"float32": float32_tflite}, mixed, runs=1, keras_runs=1)
    unmasked = export.read_list(_pairs(tmp_path / "none", [False, False]))
    rows = export.compare_tflite(model, {"float32": float32_tflite}, unmasked, runs=1,
                                 keras_runs=1)
    assert rows[1]["mean_iu_delta"] is None
    with pytest.raises(ValueError, match=r"^max_miou_drop=0\.5 needs the mean IU of each "
                                         r"variant, which compare_tflite measures only when "
                                         r"every image has a mask; these rows have none\.$"):
        export.check_thresholds(rows, max_miou_drop=0.5)
    assert export.check_thresholds(rows, min_agreement=99.0) == []


@pytest.mark.parametrize("masked, flag, message", [
    ([True, False], None, r"^--check='.*list\.txt': 1 of 2 images have no mask"),
    ([False, False], "--max_miou_drop=0.5",
     r"^--max_miou_drop needs a mask on every --check line \(mean IU\); 2 of 2 images have "
     r"none: \['.*img/0/0\.png', '.*img/1/0\.png'\]\. Received: --check='.*list\.txt'$"),
])
def test_cli_check_without_masks_is_a_usage_error(tmp_path, masked, flag, message):
    data = _pairs(tmp_path, masked)
    out = tmp_path / "out"
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", "--quantizations=float32", f"--check={data}",
              *([flag] if flag else [])) as t:
        with pytest.raises(ValueError, match=message):
            t.main(["prog"])
    assert not out.exists()


# ------------------------------------------------ 5. TFLiteRunner takes raw RGB 0..255 only --

def test_tflite_runner_refuses_normalized_or_out_of_range_images(float32_tflite, model):
    runner = export.TFLiteRunner(float32_tflite)
    image = _images(1, seed=4)[0]
    base = runner.labels(image)
    np.testing.assert_array_equal(runner.labels(image.astype("float32")), base)
    np.testing.assert_array_equal(runner.labels(image.astype("int64")), base)
    scaled = image.astype("float32") / 255
    for bad, received in [
            (scaled, rf"dtype=float32 with values in \[0, {scaled.max():g}\]"),
            (image.astype("int64") + 300, r"dtype=int64 with values in \[300, 555\]"),
            (image / 127.5 - 1, r"dtype=float64 with values in \[-1, 1\]")]:
        with pytest.raises(ValueError, match=r"^image must be RGB with raw values 0\.\.255 "
                                             rf"\(uint8\), not normalized\. Received: {received}$"):
            runner.labels(bad)
    with pytest.raises(ValueError, match=r"^image must be RGB with values 0\.\.255 \(uint8\)\. "
                                         r"Received: dtype=bool"):
        runner.invoke(image > 100)
    with pytest.raises(ValueError, match=r"dtype=float32 with values in \[1, 1\]"):
        export.keras_predictor(model)(np.ones(image.shape, np.float32))


# -------------------------------------------- 6. calibration images decoded before writing --

def test_cli_refuses_a_truncated_calibration_image_before_writing(tmp_path):
    folder = _write_images(tmp_path / "calib", _images(3, seed=5))
    data = open(os.path.join(folder, "1.png"), "rb").read()
    with open(os.path.join(folder, "1.png"), "wb") as f:  # the header is intact
        f.write(data[: len(data) // 2])
    out = tmp_path / "out"
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", "--quantizations=float32,int8",
              f"--calibration_data={folder}") as t:
        with pytest.raises(ValueError, match=rf"^--calibration_data='{folder}': image file "
                                             rf"'{folder}/1\.png' is unreadable: .*truncated"):
            t.main(["prog"])
    assert not out.exists()


# ----------------------------------------------------- 8. calibration arguments, checked --

@pytest.mark.parametrize("count", [0, -3, 1.5])
def test_num_calibration_images_must_be_at_least_one(model, count):
    with pytest.raises(ValueError, match=r"^`num_calibration_images` must be a positive "
                                         rf"integer\. Received: num_calibration_images={count}$"):
        export.convert_to_tflite(model, input_size=SIZE, quantization="int8",
                                 representative_data=list(_images(2)),
                                 num_calibration_images=count)


@pytest.mark.parametrize("data, message", [
    (_images(1)[0], r"^representative_data must be a batch of images \(N, H, W, 3\) or an "
                    r"iterable of \(H, W, 3\) images; for one image pass \[image\]\. Received: "
                    r"representative_data of shape \(32, 32, 3\)$"),
    ([_images(1)[0, ..., 0]], r"^representative_data item 0 has shape \(32, 32\); expected an "
                              r"RGB image \(H, W, 3\) or a batch \(N, H, W, 3\)\.$"),
    (tf.data.Dataset.from_tensor_slices({"image": _images(2)}),
     r"^representative_data yields dicts \(keys \['image'\]\); expected images or \(image, "
     r"mask\) tuples: map a dataset of dicts to its images, e\.g\. "
     r"dataset\.map\(lambda d: d\['image'\]\)\.$"),
])
def test_calibration_data_of_the_wrong_structure_is_named(model, data, message):
    with pytest.raises(ValueError, match=message):
        export.convert_to_tflite(model, input_size=SIZE, quantization="int8",
                                 representative_data=data)


# ----------------------------------------------------------- 9. multi-output models refused --

def test_multi_output_models_are_refused(tmp_path):
    two = build_two_headed_fcn(num_semantic=5, num_geometric=3, weights=None,
                               widths=TINY_WIDTHS, fc_units=TINY_FC)
    names = list(two.output)
    with pytest.raises(ValueError, match=r"has 2 outputs .*Received: outputs=\["):
        export.convert_to_tflite(two, input_size=SIZE)
    with pytest.raises(ValueError) as error:
        export.export_saved_model(two, str(tmp_path / "sm"))
    assert str(error.value) == (
        f"Model {two.name!r} has 2 outputs {names}; export takes a single-output FCN (logits "
        "(N, H, W, C)): build it without the auxiliary head (aux=False), or export one head, "
        f"e.g. keras.Model(model.inputs, model.output[{names[0]!r}]). Received: "
        f"outputs={names}")
    assert not (tmp_path / "sm").exists()
    with pytest.raises(ValueError, match=r"has 2 outputs"):
        export.export_tflite(two, str(tmp_path / "m.tflite"), input_size=SIZE)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------- 10. tools/export.py flags --

@pytest.mark.parametrize("argv, message", [
    (["--saved_model_any_size=false", "--quantizations="],
     r"^--saved_model_any_size=false needs --input_size, the fixed size of the SavedModel "
     r"\(e\.g\. 360x480\)\. Received: --input_size=None$"),
    (["--saved_model=false", "--quantizations="],
     r"^Nothing to export: --saved_model=false and --quantizations is empty\. Received: "
     r"--saved_model=false, --quantizations=''$"),
])
def test_cli_flags_that_would_do_nothing_are_errors(tmp_path, argv, message):
    out = tmp_path / "out"
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}", *argv) as t:
        with pytest.raises(ValueError, match=message):
            t.main(["prog"])
    assert not out.exists()


# ------------------------------------------- 12. the LiteRT example writes the photo's size --

def test_litert_example_writes_the_label_map_at_the_photos_size(model, tmp_path):
    pytest.importorskip("ai_edge_litert")
    app = load_script(os.path.join("examples", "litert_segment.py"), "audit4_litert_segment")
    path = str(tmp_path / "m.tflite")
    palette = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    export.export_tflite(model, path, input_size=SIZE, palette=palette)
    photo = np.random.default_rng(6).integers(0, 256, (45, 70, 3)).astype("uint8")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert app.main(["prog", path, str(tmp_path / "photo.png"), str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (45, 70, 3)
    runner = export.TFLiteRunner(path)
    small = runner.labels(np.asarray(Image.fromarray(photo).resize((32, 32), Image.BILINEAR)))
    expected = np.asarray(Image.fromarray(small).resize((70, 45), Image.NEAREST))
    np.testing.assert_array_equal(out, np.asarray(palette, np.uint8)[expected])


def test_calibration_and_check_images_read_16_bit_grey_as_training_does(tmp_path):
    """export's load_image clipped a 16-bit grey photo to white (PIL's convert("RGB")); it now
    reads it as the training pipelines do (the high byte)."""
    from keras_fcn.export.images import load_image

    grey = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    got = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(got, np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, -1))
