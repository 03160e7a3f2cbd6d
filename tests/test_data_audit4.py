"""Regression tests of the data / datasets / weights audit (audit 4): each test fails on the
code before its fix."""

import os
import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn import data


def _png_grey(path, array, bits):
    """Writes a greyscale PNG of 1, 2, 4 or 8 bits per pixel (PIL cannot write 2/4-bit)."""
    height, width = array.shape
    rows = b""
    for row in array:
        value = count = 0
        out = bytearray()
        for x in row:
            value, count = (value << bits) | int(x), count + bits
            if count == 8:
                out.append(value)
                value = count = 0
        if count:
            out.append(value << (8 - count))
        rows += b"\0" + bytes(out)

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return str(path)


def _image(path, shape=(8, 8)):
    Image.fromarray(np.zeros(shape + (3,), np.uint8)).save(path)
    return str(path)


def _first_mask(ds):
    return next(iter(ds))[1].numpy()[0]


# --- Finding 1: 16-bit (and 2-/4-bit) greyscale PNG masks ----------------------------------

@pytest.mark.parametrize("validate", [True, False, "headers"])
def test_16bit_mask_reads_its_values_in_both_pipelines(tmp_path, validate):
    values = (np.arange(64).reshape(8, 8) % 3).astype(np.uint16)
    mask = str(tmp_path / "m.png")
    Image.fromarray(values).save(mask)  # mode I;16
    pairs = [(_image(tmp_path / "a.png"), mask)]
    got = _first_mask(data.make_dataset(pairs, num_classes=3, validate=validate))
    np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(data.make_pydataset(pairs, num_classes=3)[0][1][0], values)


def test_16bit_mask_with_ids_above_255(tmp_path):
    values = np.array([[0, 300], [299, 1000]], np.uint16)
    mask = str(tmp_path / "m.png")
    Image.fromarray(values).save(mask)
    pairs = [(_image(tmp_path / "a.png", (2, 2)), mask)]
    got = _first_mask(data.make_dataset(pairs, num_classes=1001, ignore_label=1001))
    np.testing.assert_array_equal(got, values)
    with pytest.raises(ValueError, match=r"m.png' has value 1000 at \(1, 1\); expected 0..499"):
        data.make_dataset(pairs, num_classes=500, ignore_label=500)


@pytest.mark.parametrize("bits", [2, 4])
def test_2_and_4_bit_masks_read_raw_values(tmp_path, bits):
    values = (np.arange(64).reshape(8, 8) % 3).astype(np.uint8)
    mask = _png_grey(tmp_path / "m.png", values, bits)
    pairs = [(_image(tmp_path / "a.png"), mask)]
    np.testing.assert_array_equal(data.read_mask(mask), values)
    for validate in (True, False):
        got = _first_mask(data.make_dataset(pairs, num_classes=3, validate=validate))
        np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(data.make_pydataset(pairs, num_classes=3)[0][1][0], values)


# --- Finding 2: 16-bit greyscale images in the NumPy pipeline ------------------------------

def test_16bit_grey_image_same_in_both_pipelines(tmp_path):
    grey = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    image = str(tmp_path / "g.png")
    Image.fromarray(grey).save(image)
    mask = str(tmp_path / "m.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask)
    pairs = [(image, mask)]
    tf_image = next(iter(data.make_dataset(pairs, num_classes=3)))[0].numpy()[0]
    np_image = data.make_pydataset(pairs, num_classes=3)[0][0][0]
    np.testing.assert_array_equal(np_image, tf_image)
    assert np_image[0, :4, 0].tolist() == [0.0, 4.0, 8.0, 12.0]
    assert np_image[7, 7].tolist() == [255.0] * 3


# --- Finding 5: convert_weights with weights that match no layer; keras.applications .npz ---

def _tiny_fcn32s():
    from keras_fcn.models import build_fcn

    return build_fcn("32s", 3, weights=None, name="fcn32s", widths=(4, 4, 8, 8, 8), fc_units=8)


def test_convert_refuses_weights_that_set_no_layer(tmp_path):
    from keras_fcn import weights

    source = str(tmp_path / "other.npz")
    weights.save_npz({"foo_conv": [np.zeros((3, 3, 3, 4), "f4"), np.zeros(4, "f4")]}, source)
    with pytest.raises(ValueError, match=r"The weights of '.*other\.npz' match no layer of "
                                         r"'fcn32s': its layers are \['foo_conv'\]"):
        weights.convert_to_keras_model(source, _tiny_fcn32s())


def test_convert_npz_with_keras_applications_names_is_renamed(tmp_path):
    from keras_fcn import weights

    kernel = np.arange(3 * 3 * 3 * 4, dtype="f4").reshape(3, 3, 3, 4)
    source = str(tmp_path / "vgg.npz")
    weights.save_npz({"block1_conv1": [kernel, np.ones(4, "f4")]}, source)
    model = _tiny_fcn32s()
    with pytest.warns(UserWarning, match=r"the model's layers without weights in the file"):
        report = weights.convert_to_keras_model(source, model, strict=False)  # only conv1_1
    assert report["set"] == ["conv1_1"] and report["unused"] == []
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0], kernel)


def test_convert_weights_tool_exits_2_when_nothing_matches(tmp_path):
    import subprocess
    import sys

    from keras_fcn import weights

    source = str(tmp_path / "other.npz")
    weights.save_npz({"foo_conv": [np.zeros((3, 3, 3, 4), "f4"), np.zeros(4, "f4")]}, source)
    output = tmp_path / "out.keras"
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                        "convert_weights.py")
    result = subprocess.run(
        [sys.executable, tool, f"--input={source}", "--model=fcn32s", "--num_classes=3",
         "--widths=4,4,8,8,8", "--fc_units=8", f"--output={output}"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("convert_weights")]
    assert len(errors) == 1 and "match no layer of 'fcn32s'" in errors[0], result.stderr
    assert f"The weights of '{source}'" in errors[0]
    assert "Traceback" not in result.stderr and not output.exists()


# --- Finding 4: two files with the same stem in one folder ----------------------------------

@pytest.mark.parametrize("on_unpaired", ["error", "warn"])
def test_folder_pairs_refuses_two_files_with_one_stem(tmp_path, on_unpaired):
    from keras_fcn.datasets import folder_pairs

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _image(tmp_path / "images" / "a.jpg")
    mask = np.zeros((8, 8), np.uint8)
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    Image.fromarray(mask + 1).save(tmp_path / "masks" / "a.bmp")
    bmp, png = tmp_path / "masks" / "a.bmp", tmp_path / "masks" / "a.png"
    with pytest.raises(ValueError, match=f"'{bmp}' and '{png}' have the same stem 'a'"):
        folder_pairs(tmp_path / "images", tmp_path / "masks", on_unpaired=on_unpaired)
    bmp.unlink()
    assert folder_pairs(tmp_path / "images", tmp_path / "masks") == [
        (os.path.join(tmp_path / "images", "a.jpg"), os.path.join(tmp_path / "masks", "a.png"))]


# --- Finding 7: nearest sampling rounds halves up ---------------------------------------------

def test_nearest_warp_half_pixel_shift_is_a_clean_shift():
    from keras_fcn.data import warp

    labels = tf.constant(np.arange(8, dtype=np.float32).reshape(1, 1, 8, 1))
    flow = tf.constant(np.tile(np.array([0.5, 0.0], np.float32), (1, 1, 8, 1)))
    got = warp.warp_images(labels, flow, "nearest").numpy().ravel().tolist()
    assert got == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.0]
    coords = tf.constant([[[[1.5, 0.0], [2.5, 0.0], [2.49, 0.0]]]], tf.float32)
    assert warp.sample(labels, coords, "nearest").numpy().ravel().tolist() == [2.0, 3.0, 2.0]


# --- Finding 10: mask files PIL reads but the tf.data decoder cannot -------------------------

_FORMAT_MESSAGE = (r"mask '{}' is {}; mask_format='index' masks must be PNG, BMP or JPEG files "
                   r"\(the formats make_dataset decodes\)")


@pytest.mark.parametrize("ext, found", [(".tif", "a TIFF file"), (".gif", "a GIF file")])
def test_validation_refuses_masks_tf_cannot_decode(tmp_path, ext, found):
    values = (np.arange(64).reshape(8, 8) % 3).astype(np.uint8)
    mask = str(tmp_path / f"m{ext}")
    Image.fromarray(values, "L").save(mask)
    pairs = [(_image(tmp_path / "a.png"), mask)]
    expected = _FORMAT_MESSAGE.format(re.escape(mask), found)
    for validate in (True, "headers"):
        with pytest.raises(ValueError, match=expected):
            data.make_dataset(pairs, num_classes=3, validate=validate)
    report = data.validate_pairs(pairs, num_classes=3, skip_bad=True)
    assert report.good == [] and re.match(expected, report.bad[0][1])
    # Without validation the decoder names the file too (TF's error names none).
    with pytest.raises(Exception, match=_FORMAT_MESSAGE.format(
            re.escape(mask), r"a file starting with b'(II|GIF).*?")):
        next(iter(data.make_dataset(pairs, num_classes=3, validate=False)))


def test_bmp_and_png_masks_still_accepted(tmp_path):
    values = (np.arange(64).reshape(8, 8) % 3).astype(np.uint8)
    for ext in (".bmp", ".png"):
        mask = str(tmp_path / f"m{ext}")
        Image.fromarray(values, "L").save(mask)
        pairs = [(_image(tmp_path / "a.png"), mask)]
        for validate in (True, False):
            got = _first_mask(data.make_dataset(pairs, num_classes=3, validate=validate))
            np.testing.assert_array_equal(got, values)


# --- Finding 9: NYUDv2 inputs of another size than the label ---------------------------------

@pytest.mark.parametrize("modality, kind, size", [("hha", "hha", (30, 22)),
                                                  ("fusion", "rgb", (34, 26)),
                                                  ("rgbd", "depth", (34, 26))])
def test_nyud_load_example_checks_sizes(tmp_path, modality, kind, size):
    from keras_fcn.datasets import nyud

    root = str(tmp_path / "nyud")
    nyud.write_fake_nyud(root, num_images=2, height=24, width=32)
    image_id = nyud.nyud_ids(root, "train")[0]
    folder = {"rgb": "images", "hha": "hha", "depth": "depth"}[kind]
    path = os.path.join(root, "data", folder, f"img_{image_id}.png")
    Image.open(path).resize(size).save(path)
    expected = re.escape(f"NYUDv2 {kind} of '{image_id}' is ({size[1]}, {size[0]}) but its "
                         "label is (24, 32)")
    with pytest.raises(ValueError, match=expected):
        nyud.load_example(root, image_id, modality)
    with pytest.raises(Exception, match=expected):
        next(iter(nyud.make_nyud_dataset(root, "train", modality=modality)))
    inputs, label = nyud.load_example(root, image_id, "rgb" if kind != "rgb" else "hha")
    assert label.shape == (24, 32) and inputs.shape == (24, 32, 3)


# --- Finding 8: convert_labeled_mat and the user's split files --------------------------------

def _fake_mat(tmp_path, num_images=5):
    from keras_fcn.datasets import nyud

    mat, mapping = str(tmp_path / "labeled.mat"), str(tmp_path / "mapping.mat")
    nyud.write_fake_labeled_mat(mat, num_images=num_images, height=16, width=20)
    nyud.write_fake_class_mapping(mapping)
    return mat, mapping


def test_convert_labeled_mat_keeps_the_users_split_files(tmp_path):
    from keras_fcn.datasets import nyud

    mat, mapping = _fake_mat(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.txt").write_text("5001\n5002\n")
    with pytest.raises(FileExistsError, match=re.escape(
            f"NYUDv2 split file(s) already exist with other ids: '{out / 'train.txt'}' (2 ids, "
            "would be 1). Pass overwrite=True")):
        nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 3], verbose=False)
    assert (out / "train.txt").read_text() == "5001\n5002\n"
    assert not (out / "segmentation").exists()  # refused before converting
    assert nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 3], verbose=False,
                                    overwrite=True) == 2
    assert (out / "train.txt").read_text() == "5004\n"


def test_convert_labeled_mat_with_indices_lists_only_converted_ids(tmp_path):
    from keras_fcn.datasets import nyud

    mat, mapping = _fake_mat(tmp_path)
    out = str(tmp_path / "out")
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 2], with_hha=False, verbose=False)
    listed = {s: nyud.nyud_ids(out, s) for s in ("train", "val", "test")}
    assert listed == {"train": ["5003"], "val": [], "test": ["5001"]}
    labels = [y.numpy().shape for _, y in nyud.make_nyud_dataset(out, "train")]
    assert labels == [(1, 16, 20)]
    # A later call adds its ids to those already converted; the same call again is a no-op.
    nyud.convert_labeled_mat(mat, mapping, out, indices=[3], with_hha=False, verbose=False,
                             overwrite=True)
    assert nyud.nyud_ids(out, "train") == ["5003", "5004"]
    nyud.convert_labeled_mat(mat, mapping, out, indices=[3], with_hha=False, verbose=False)


# --- Finding 6: HHA normals next to missing depth ---------------------------------------------

def _plane_depth(height=48, width=64, slope=0.0):
    """Depth of a plane: 1/depth is linear in the pixel row (slope 0: a fronto-parallel wall)."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    return np.broadcast_to(1.0 / (1 / 3.0 + slope * (rows - height / 2)),
                           (height, width)).astype(np.float32)


@pytest.mark.parametrize("slope, missing", [(0.0, 0.0), (0.0, np.nan), (0.004, 0.0)])
def test_hha_valid_pixels_next_to_a_hole_keep_the_planes_normal(slope, missing):
    from keras_fcn.datasets import hha

    depth = _plane_depth(slope=slope)
    reference = hha.compute_hha(depth, gravity="camera")
    holed = depth.copy()
    holed[20:28, 28:36] = missing
    got = hha.compute_hha(holed, gravity="camera")
    assert got[20:28, 28:36].max() == 0
    outside = np.ones(depth.shape, bool)
    outside[20:28, 28:36] = False
    assert np.abs(got[..., 2].astype(int) - reference[..., 2])[outside].max() == 0
    np.testing.assert_array_equal(got[outside], reference[outside])
    if slope == 0.0:  # the column through the hole: 128 (a wall) right up to it
        assert got[14:34, 32, 2].tolist() == [128] * 6 + [0] * 8 + [128] * 6


@pytest.mark.parametrize("shape", [(1, 5), (5, 1), (0, 0)])
def test_hha_refuses_depth_maps_too_small(shape):
    from keras_fcn.datasets import hha

    with pytest.raises(ValueError, match=re.escape(
            f"depth must be at least 2x2 pixels: surface normals need a neighbour along each "
            f"axis. Received: depth of shape {shape}")):
        hha.compute_hha(np.ones(shape, np.float32))


# --- Finding 3: the VOC TFDS builder and a listed image that is missing -----------------------

def test_voc_tfds_builder_refuses_a_missing_listed_image(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_fcn.datasets import voc_tfds_builder

    voc = tmp_path / "manual" / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000033", "2007_000039"]
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for image_id in ids:
        _image(voc / "JPEGImages" / f"{image_id}.jpg")
        mask = Image.fromarray(np.ones((8, 8), np.uint8), "P")
        mask.putpalette([0] * 768)
        mask.save(voc / "SegmentationClass" / f"{image_id}.png")
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (voc / "JPEGImages" / f"{ids[2]}.jpg").unlink()
    builder = voc_tfds_builder("voc2012", data_dir=str(tmp_path / "tfds"))
    missing = voc / "JPEGImages" / f"{ids[2]}.jpg"
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"Image '{missing}' (mask '{voc / 'SegmentationClass' / ids[2]}.png') is listed in "
            "the voc2012 'train' split but does not exist")):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(tmp_path / "manual")))


# --- Finding 11: blur wider than the crop or the image; negative ids in remap_labels ----------------------

def _numpy_blur(image, sigma, radius):
    """Reference: numpy's "symmetric" pad (repeated for pads wider than the image), then
    the normalized 1-D Gaussian along rows and columns."""
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image.astype(np.float64), [(radius, radius), (radius, radius), (0, 0)],
                    mode="symmetric")
    height, width = image.shape[:2]
    rows = sum(kernel[k] * padded[k:k + height] for k in range(2 * radius + 1))
    return sum(kernel[k] * rows[:, k:k + width] for k in range(2 * radius + 1))


def test_blur_wider_than_the_image_mirrors_as_numpy():
    from keras_fcn.data.augment import gaussian_blur

    image = np.random.default_rng(0).uniform(0, 255, (6, 8, 3)).astype(np.float32)
    for radius in (2, 9, 20):  # 9 and 20 > 6 rows: tf.pad "SYMMETRIC" refused these
        got = gaussian_blur(tf.constant(image), 3.0, radius).numpy()
        np.testing.assert_allclose(got, _numpy_blur(image, 3.0, radius), rtol=1e-5, atol=1e-3)


def test_blur_larger_than_the_crop_or_the_image_trains(tmp_path):
    pairs = [(_image(tmp_path / "a.png"), str(tmp_path / "m.png"))]  # 8x8
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(pairs[0][1])
    for crop_size in (8, 16):  # radius 9 > the crop; 16: the image is smaller than the crop
        for seed in range(4):  # the blur is drawn for half the seeds
            ds = data.make_dataset(pairs, num_classes=3, crop_size=crop_size, blur=3.0,
                                   seed=seed)
            image = next(iter(ds))[0].numpy()
            assert image.shape == (1, crop_size, crop_size, 3) and np.isfinite(image).all()


def test_remap_labels_refuses_negative_ids():
    from keras_fcn.datasets.tfds import OXFORD_PET_REMAP, remap_labels

    got = remap_labels(tf.constant([[0, 1, 2, 3, 7]]), OXFORD_PET_REMAP).numpy().tolist()
    assert got == [[0, 1, 0, 255, 7]]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="remap_labels: the mask has negative values"):
        remap_labels(tf.constant([[-1, 1, 2, 3]]), OXFORD_PET_REMAP)


def test_convert_labeled_mat_keeps_existing_files_unless_overwrite(tmp_path):
    """The authors' HHA and cropped images in the folder are not replaced by this package's;
    the same call again writes nothing; overwrite=True replaces them."""
    from keras_fcn.datasets import nyud
    from keras_fcn.datasets.nyud.layout import example_paths

    mat, mapping = _fake_mat(tmp_path)
    out = str(tmp_path / "out")
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False)
    paths = example_paths(out, "5001")
    theirs = np.full((16, 20, 3), 7, np.uint8)
    for kind in ("hha", "rgb"):
        Image.fromarray(theirs).save(paths[kind])
    computed = np.asarray(Image.open(example_paths(out, "5002")["hha"]))
    assert nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False) == 2
    for kind in ("hha", "rgb"):
        np.testing.assert_array_equal(np.asarray(Image.open(paths[kind])), theirs)
    np.testing.assert_array_equal(np.asarray(Image.open(example_paths(out, "5002")["hha"])),
                                  computed)
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False, overwrite=True)
    assert not (np.asarray(Image.open(paths["hha"])) == 7).all()
    assert not (np.asarray(Image.open(paths["rgb"])) == 7).all()
