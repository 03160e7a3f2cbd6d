"""int8 calibration after walkthrough 20: colour label masks are refused as calibration photos,
a palette photo of colours is not called grey, a refused mask names its rule and the fix, the
CLI says how many images it calibrates on (a warning when few, a progress bar), notes
calibration flags that no variant uses, suggests a data set's train split, and compare_tflite
names an empty variant dict or pair list."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import keras_fcn
from keras_fcn import export
from keras_fcn.datasets.shapes import SHAPES_PALETTE, make_shapes_dataset
from keras_fcn.export import images
from tiny import saved_raw_rgb_fcn
from tool_flags import one_error_line, run_in_process, tool

NUM_CLASSES = 3
SIZE = 32


def _png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)
    return str(path)


def _rgb(seed, hw=(SIZE, SIZE)):
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The shapes data set (3 train, 1 val at 32 px) and its masks coloured by its palette in
    ``colour/`` (as a data set of ``"mask_format": "rgb"`` stores them)."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(str(root), num_train=3, num_val=1, size=SIZE)
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(SHAPES_PALETTE)] = SHAPES_PALETTE
    palette[255] = (255, 255, 255)  # the void band
    for name in sorted(os.listdir(root / "train" / "masks")):
        ids = np.asarray(Image.open(root / "train" / "masks" / name))
        _png(root / "colour" / name, palette[ids])
    return root


def base_argv(tmp_path, *more):
    return [f"--model={tmp_path / 'none.keras'}", f"--output_dir={tmp_path / 'out'}",
            "--input_size=32x32", *more]


def test_colour_label_masks_are_refused_and_the_shapes_photos_pass(shapes, tmp_path):
    for name in os.listdir(shapes / "train" / "images"):  # textured backgrounds: photos
        assert images.load_calibration_image(shapes / "train" / "images" / name).shape == (
            SIZE, SIZE, 3)
    assert len(list(images.calibration_images(str(shapes / "train"), (16, 16)))) == 3
    first = str(shapes / "colour" / "train_00000.png")
    count = len(np.unique(np.asarray(Image.open(first)).reshape(-1, 3), axis=0))
    assert count <= 5
    message = (rf"image file '{first}' is a colour \(mode 'RGB'\) image with only {count} "
               r"distinct colour\(s\), like a colour label mask: one with at most 64 "
               r"\(keras_fcn\.export\.images\.MASK_MAX_VALUES\) is taken for a label mask \(a "
               r"photo has thousands\); representative_data must be RGB photos with raw pixel "
               r"values 0\.\.255: pass the photos \(e\.g\. the images/ folder beside masks/\), "
               r"not the masks\.$")
    with pytest.raises(ValueError, match="^" + message):
        images.load_calibration_image(first)
    with pytest.raises(ValueError, match="^" + message):
        next(images.calibration_images(str(shapes / "colour"), (16, 16)))
    with tool("export", *base_argv(tmp_path, "--quantizations=int8",
                                   f"--calibration_data={shapes / 'colour'}")) as t:
        with pytest.raises(ValueError, match=rf"^--calibration_data='{shapes / 'colour'}': "
                                             + message):
            t.check_flags()
    done = run_in_process("tools/export.py", *base_argv(
        tmp_path, "--quantizations=int8", f"--calibration_data={shapes / 'colour'}"))
    assert one_error_line(done).startswith(f"error: --calibration_data='{shapes / 'colour'}': "
                                           f"image file '{first}' is a colour")
    assert not (tmp_path / "out").exists()


def _palette_photo(path, grey):
    """A palette (mode P) photo using all 256 entries: grey levels or colours."""
    levels = np.arange(256, dtype=np.int64)
    colours = (np.stack([levels] * 3, 1) if grey else
               np.stack([levels, 255 - levels, (levels * 7) % 256], 1).astype(np.uint8))
    indices = (np.arange(SIZE * SIZE) % 256).reshape(SIZE, SIZE).astype(np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(colours.reshape(-1).tolist())
    image.save(path)
    return str(path)


def test_a_palette_colour_photo_is_not_called_grey(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    colour = _palette_photo(folder / "colour.png", grey=False)
    grey = _palette_photo(folder / "grey.png", grey=True)
    assert not images.is_grey_photo(colour)
    assert images.is_grey_photo(grey)
    assert images.check_calibration_images([colour, grey]) == [grey]
    os.remove(grey)
    with tool("export", *base_argv(tmp_path, "--quantizations=int8",
                                   f"--calibration_data={folder}")) as t:
        t.check_flags()
    assert "grey" not in capsys.readouterr().out


def test_a_low_contrast_grey_photo_is_refused_with_the_rule_and_the_fix(tmp_path):
    path = _png(tmp_path / "dim.png", np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 11)
    with pytest.raises(ValueError) as error:
        images.load_calibration_image(path)
    assert str(error.value) == (
        f"image file '{path}' is a single-channel (mode 'L') image, like a label mask: 11 "
        "distinct value(s), and one with at most 64 (keras_fcn.export.images.MASK_MAX_VALUES) "
        "is taken for a label mask (a grey photo has hundreds); representative_data must be RGB "
        "photos with raw pixel values 0..255: pass the photos, not their masks (a low-contrast "
        "grey photo: save it as RGB).")


def test_the_cli_says_which_images_it_calibrates_on(tmp_path, capsys):
    folder = tmp_path / "calib"
    lines = []
    for i in (2, 0, 1):  # a list file's order is its lines', not the names'
        lines.append(os.path.basename(_png(folder / f"{i}.png", _rgb(i))))
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    listed = str(folder / "list.txt")
    with tool("export", *base_argv(tmp_path, "--quantizations=int8", "--num_calibration=2",
                                   f"--calibration_data={listed}")) as t:
        files = t.calibration_files((SIZE, SIZE))
    assert files.paths == [str(folder / "2.png"), str(folder / "0.png")]
    captured = capsys.readouterr()
    assert captured.out == (f"Calibrating int8 on 2 image(s) (the first 2 of 3 in "
                            f"--calibration_data='{listed}' in list order; at most "
                            "--num_calibration=2)\n")
    assert captured.err == ("warning: few images (2 < 10): the int8 ranges may clip; give "
                            "--calibration_data ~100 photos\n")
    # a whole export on one image: said, warned, with a progress bar; exit 0
    os.remove(folder / "list.txt")
    for i in (0, 1):
        os.remove(folder / f"{i}.png")
    _, model = saved_raw_rgb_fcn(tmp_path, NUM_CLASSES, seed=0)
    done = run_in_process("tools/export.py", f"--model={model}", "--name=tiny",
                          f"--output_dir={tmp_path / 'o'}", "--input_size=32x32",
                          "--quantizations=int8", "--nosaved_model", f"--calibration_data={folder}")
    assert done.returncode == 0, done.stderr
    assert (f"Calibrating int8 on 1 image(s) (the first 1 of 1 in --calibration_data="
            f"'{folder}' in file name order; at most --num_calibration=100)\n") in done.stdout
    assert "1/1" in done.stdout  # the progress bar's last line
    assert "warning: few images (1 < 10)" in done.stderr
    assert "Few calibration images" not in done.stderr  # said once, before the work
    assert os.path.isfile(tmp_path / "o" / "tiny_int8.tflite")
    sidecar = json.loads((tmp_path / "o" / "tiny_int8.json").read_text())
    assert sidecar["calibration_images"] == 1


def test_the_api_warns_on_few_calibration_images_and_records_their_count(tmp_path):
    """export_tflite said nothing of how many images calibrated its int8 model."""
    _, model = saved_raw_rgb_fcn(tmp_path, NUM_CLASSES, seed=0)
    photos = np.stack([_rgb(i) for i in range(4)])
    with pytest.warns(UserWarning, match=r"^Few calibration images: int8 calibrated on 3 "
                      r"image\(s\) \(fewer than 10\)"):
        metadata = export.export_tflite(model, str(tmp_path / "m.tflite"), input_size=(SIZE, SIZE),
                                        quantization="int8", representative_data=photos,
                                        num_calibration_images=3)
    assert metadata["calibration_images"] == 3
    assert json.loads((tmp_path / "m.json").read_text())["calibration_images"] == 3
    floats = export.export_tflite(model, str(tmp_path / "f.tflite"), input_size=(SIZE, SIZE),
                                  quantization="float16")
    assert "calibration_images" not in floats


@pytest.mark.parametrize("flags_, unused", [
    (["--quantizations=float16", "--calibration_data=DATA"], "--calibration_data"),
    (["--quantizations=float32,dynamic_int8", "--int8_io=int8", "--num_calibration=5"],
     "--num_calibration, --int8_io"),
])
def test_calibration_flags_no_variant_uses_are_noted(tmp_path, capsys, flags_, unused):
    argv = [f.replace("DATA", str(tmp_path)) for f in flags_]
    with tool("export", *base_argv(tmp_path, *argv)) as t:
        assert t.check_flags() == ((SIZE, SIZE), None, None)
        quantizations = ",".join(t.FLAGS.quantizations)
    assert capsys.readouterr().out == (
        f"Note: {unused} unused: only the full int8 variants (int8, int8_per_tensor) are "
        f"calibrated, and --quantizations='{quantizations}' has none\n")
    with tool("export", *base_argv(tmp_path, "--quantizations=float16")) as t:
        t.check_flags()
    assert capsys.readouterr().out == ""


def test_a_data_set_root_suggests_its_train_split_for_calibration(shapes, tmp_path):
    train = os.path.join(shapes, "train")
    with tool("export", *base_argv(tmp_path, "--quantizations=int8",
                                   f"--calibration_data={shapes}")) as t:
        with pytest.raises(ValueError, match=(
                rf"^--calibration_data='{shapes}': Folder '{shapes}' holds no images but the "
                r"splits \['train', 'val'\] of a data set .*; pass one of them, e\.g\. "
                rf"'{train}' \(calibrate on training images: calibrating on the images the "
                r"quality gate checks, e\.g\. val, would flatter int8 there\)$")):
            t.check_flags()
    with pytest.raises(ValueError, match=rf"e\.g\. '{train}' \(calibrate on training"):
        next(images.calibration_images(str(shapes), (16, 16)))
    with pytest.raises(ValueError, match=rf"e\.g\. '{os.path.join(shapes, 'val')}'$"):
        images.read_list(shapes)  # the quality gate's images: val


def test_compare_tflite_names_no_variant_and_no_pair(tmp_path):
    model, _ = saved_raw_rgb_fcn(tmp_path, NUM_CLASSES, seed=0)
    flatbuffer = export.convert_to_tflite(model, input_size=(SIZE, SIZE))
    pair = [(_png(tmp_path / "a.png", _rgb(0)), None)]
    with pytest.raises(ValueError, match=r"^compare_tflite needs at least one \(image, mask\) "
                                         r"pair .*Received: pairs=\[\]$"):
        keras_fcn.compare_tflite(model, {"float32": flatbuffer}, [])
    with pytest.raises(ValueError, match=r"^compare_tflite needs at least one TFLite variant, "
                                         r"e\.g\. \{'int8': 'm_int8\.tflite'\}\. Received: "
                                         r"tflite_paths=\{\}$"):
        keras_fcn.compare_tflite(model, {}, pair)
