"""Tests of keras_fcn.data: decoding, augmentation, batching and validation."""

import logging
import os
import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn import data
from keras_fcn.data.masks import palette_to_table
from keras_fcn.labels import voc_palette

MEAN = np.array(data.MEAN_RGB, np.float32)


def _write_image(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return str(path)


def _write_palette_mask(path, indices):
    mask = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    mask.putpalette([c for colour in voc_palette() for c in colour])
    mask.save(path)
    return str(path)


def _block_labels(rng, height, width, labels, block=8):
    """Random labels on block x block tiles, so resizing keeps most pixels inside a block."""
    tiles = rng.choice(labels, size=(-(-height // block), -(-width // block)))
    return np.kron(tiles, np.ones((block, block), np.int64))[:height, :width].astype(np.uint8)


# Each label gets a corner of the RGB cube: a bilinear blend of two different codes is never
# a code itself, so "exact code" pixels are the ones that were not blended across an edge.
_CODES = {0: (255, 0, 0), 3: (0, 255, 0), 7: (0, 0, 255), 255: (255, 255, 255)}


def _label_image(mask):
    """An image whose pixels encode the label of the mask (see _CODES)."""
    image = np.zeros(mask.shape + (3,), np.uint8)
    for label, code in _CODES.items():
        image[mask == label] = code
    return image


def _decode_label(image):
    """Label of each exact-code pixel, -1 elsewhere."""
    labels = np.full(image.shape[:-1], -1)
    for label, code in _CODES.items():
        labels[(np.abs(image - np.array(code, np.float32)) < 1e-3).all(axis=-1)] = label
    return labels


def _collect(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


@pytest.fixture
def label_pairs(tmp_path):
    """Three PNG pairs (palette masks with labels 0, 3, 7 and void) of different sizes."""
    rng = np.random.default_rng(1)
    pairs = []
    for i, (h, w) in enumerate([(40, 56), (48, 48), (33, 61)]):
        mask = _block_labels(rng, h, w, [0, 3, 7, 255])
        image = _write_image(tmp_path / f"img{i}.png", _label_image(mask))
        pairs.append((image, _write_palette_mask(tmp_path / f"mask{i}.png", mask)))
    return pairs


def test_palette_png_indices_are_read_exactly(tmp_path):
    indices = np.arange(64 * 4, dtype=np.uint8).reshape(16, 16) % 21
    indices[0, :5] = 255
    mask_path = _write_palette_mask(tmp_path / "m.png", indices)
    image_path = _write_image(tmp_path / "i.jpg", np.zeros((16, 16, 3)))
    # tf.io.decode_png would return the palette colours; the indices are the labels.
    np.testing.assert_array_equal(data.read_index_png(mask_path), indices)
    (_, mask), = _collect(data.make_dataset([(image_path, mask_path)], num_classes=21))
    assert mask.dtype == np.int32 and mask.shape == (1, 16, 16)
    np.testing.assert_array_equal(mask[0], indices)


def test_single_channel_mask_and_void_kept(tmp_path):
    indices = np.full((8, 10), 255, np.uint8)
    indices[2:6, 3:7] = 10
    mask_path = _write_image(tmp_path / "m.png", indices)  # mode L
    image_path = _write_image(tmp_path / "i.png", np.zeros((8, 10, 3)))
    (image, mask), = _collect(data.make_dataset([(image_path, mask_path)], num_classes=11,
                                                ignore_label=255))
    np.testing.assert_array_equal(mask[0], indices)  # 255 never rewritten to 0
    assert image.dtype == np.float32 and image.shape == (1, 8, 10, 3)


def test_rgb_palette_mapping_is_exact(tmp_path):
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (10, 20, 30)]
    labels = np.random.default_rng(0).integers(0, 4, size=(12, 9))
    rgb = np.array(palette, np.uint8)[labels]
    mask_path = _write_image(tmp_path / "m.png", rgb)
    image_path = _write_image(tmp_path / "i.png", rgb)
    ds = data.make_dataset([(image_path, mask_path)], num_classes=4, mask_format="rgb",
                           palette=palette)
    np.testing.assert_array_equal(_collect(ds)[0][1][0], labels)
    by_dict = {colour: i for i, colour in enumerate(palette)}
    np.testing.assert_array_equal(data.read_mask(mask_path, "rgb", by_dict), labels)


def test_rgb_unknown_colour_error_or_ignore(tmp_path):
    palette = [(0, 0, 0), (255, 0, 0)]
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[4, 2] = (1, 2, 3)
    mask_path = _write_image(tmp_path / "colours.png", rgb)
    image_path = _write_image(tmp_path / "i.png", rgb)
    pairs = [(image_path, mask_path)]
    with pytest.raises(ValueError, match=r"colours\.png' has colour \(1, 2, 3\) at \(4, 2\)"):
        data.validate_pairs(pairs, num_classes=2, mask_format="rgb", palette=palette)
    ds = data.make_dataset(pairs, num_classes=2, mask_format="rgb", palette=palette,
                           validate=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"colours\.png' has colour"):
        _collect(ds)
    ds = data.make_dataset(pairs, num_classes=2, mask_format="rgb", palette=palette,
                           unknown_color="ignore", ignore_label=9)
    mask = _collect(ds)[0][1][0]
    assert mask[4, 2] == 9 and (np.delete(mask.ravel(), 4 * 6 + 2) == 0).all()


def test_sbd_mat_masks(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    labels = np.random.default_rng(0).integers(0, 21, size=(7, 11)).astype(np.uint8)
    labels[0, 0] = 255
    mat_path = str(tmp_path / "2008_000002.mat")
    scipy_io.savemat(mat_path, {"GTcls": {"Segmentation": labels, "Boundaries": np.zeros(1),
                                          "CategoriesPresent": np.array([1])}})
    image_path = _write_image(tmp_path / "2008_000002.jpg", np.zeros((7, 11, 3)))
    ds = data.make_dataset([(image_path, mat_path)], num_classes=21, mask_format="sbd_mat")
    np.testing.assert_array_equal(_collect(ds)[0][1][0], labels)


@pytest.mark.parametrize("value, dtype, shown", [(-1, np.int16, "-1"), (276, np.int16, "276"),
                                                  (3.7, np.float64, "3.7"), (21, np.uint8, "21")])
def test_sbd_mat_masks_outside_the_classes_are_refused(tmp_path, value, dtype, shown):
    """A uint8 cast made -1 void, 276 class 20 and 3.7 class 3, without a word."""
    scipy_io = pytest.importorskip("scipy.io")
    from keras_fcn.data.masks import read_sbd_mat

    labels = np.zeros((4, 5), dtype)
    labels[1, 2] = value
    mat_path = str(tmp_path / "bad.mat")
    scipy_io.savemat(mat_path, {"GTcls": {"Segmentation": labels}})
    with pytest.raises(ValueError, match=rf"^mask '.*bad\.mat' holds the value {shown}: SBD "
                                         r"class masks hold whole class ids 0 to 20 \(or 255"):
        read_sbd_mat(mat_path)
    labels[1, 2] = 20
    scipy_io.savemat(mat_path, {"GTcls": {"Segmentation": labels}})
    assert read_sbd_mat(mat_path).dtype == np.uint8 and read_sbd_mat(mat_path)[1, 2] == 20


@pytest.mark.parametrize("crop_size", [None, (24, 24), (64, 72)])
def test_augmentation_keeps_labels_and_alignment(label_pairs, crop_size):
    ds = data.make_dataset(label_pairs, num_classes=8, crop_size=crop_size,
                           scale_range=(0.6, 1.7), flip=True, shuffle=True, seed=3)
    for _ in range(3):  # a few epochs: different scales, crops and flips
        for image, mask in _collect(ds):
            assert set(np.unique(mask)) <= {0, 3, 7, 255}  # nearest: no new labels
            padded = (image[0] == MEAN).all(axis=-1)
            assert (mask[0][padded] == 255).all()
            # Where the bilinear image holds an exact label code (not a blend across a block
            # edge), the nearest-resized mask must hold that label.
            exact = (_decode_label(image[0]) >= 0) & ~padded
            assert exact.sum() > 0.5 * (~padded).sum()
            np.testing.assert_array_equal(_decode_label(image[0])[exact], mask[0][exact])


def test_crop_and_flip_alignment_is_exact(label_pairs):
    ds = data.make_dataset(label_pairs, num_classes=8, crop_size=(30, 30), flip=True, seed=5,
                           batch_size=3)
    image, mask = _collect(ds)[0]
    padded = (image == MEAN).all(axis=-1)
    np.testing.assert_array_equal(np.where(padded, 255, _decode_label(image)), mask)
    # Every element is cropped to the requested size.
    assert image.shape == (3, 30, 30, 3) and mask.shape == (3, 30, 30)


def test_crop_larger_than_image_pads_with_mean_and_ignore(label_pairs):
    ds = data.make_dataset(label_pairs[:1], num_classes=8, crop_size=(50, 60), seed=0)
    image, mask = _collect(ds)[0]
    assert image.shape == (1, 50, 60, 3)
    np.testing.assert_array_equal(image[0, 40:], np.broadcast_to(MEAN, (10, 60, 3)))
    np.testing.assert_array_equal(image[0, :, 56:], np.broadcast_to(MEAN, (50, 4, 3)))
    assert (mask[0, 40:] == 255).all() and (mask[0, :, 56:] == 255).all()


def test_scale_resizes_masks_with_nearest_only(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[::2, ::2] = 6  # a fine pattern: bilinear would create values between 0 and 6
    pairs = [(_write_image(tmp_path / "i.png", np.zeros((20, 20, 3))),
              _write_image(tmp_path / "m.png", mask))]
    ds = data.make_dataset(pairs, num_classes=7, scale_range=(1.3, 1.3), seed=0)
    (_, out), = _collect(ds)
    assert out.shape == (1, 26, 26)
    assert set(np.unique(out)) == {0, 6}


def test_padded_batches_pad_with_ignore_and_mean(label_pairs):
    ds = data.make_dataset(label_pairs, num_classes=8, batch_size=3, ignore_label=255)
    image, mask = _collect(ds)[0]
    assert image.shape == (3, 48, 61, 3) and mask.shape == (3, 48, 61)
    # The first element is 40x56: the rest is padding.
    assert (mask[0, 40:] == 255).all() and (mask[0, :, 56:] == 255).all()
    np.testing.assert_array_equal(image[0, 40:], np.broadcast_to(MEAN, (8, 61, 3)))
    original = data.read_mask(label_pairs[0][1])
    np.testing.assert_array_equal(mask[0, :40, :56], original)


def test_photometric_changes_image_only(label_pairs):
    plain = _collect(data.make_dataset(label_pairs, num_classes=8, seed=1))
    jittered = _collect(data.make_dataset(label_pairs, num_classes=8, photometric=0.5, seed=1))
    for (image_a, mask_a), (image_b, mask_b) in zip(plain, jittered):
        np.testing.assert_array_equal(mask_a, mask_b)
        assert not np.array_equal(image_a, image_b)
        assert image_b.min() >= 0 and image_b.max() <= 255


def test_color_jitter_is_a_deprecated_alias_that_warns_at_the_caller(label_pairs):
    """The 0.1.0 `color_jitter=True`: photometric strength 0.5 without the hue turn."""
    import warnings

    plain = _collect(data.make_dataset(label_pairs, num_classes=8, seed=1))
    with pytest.warns(DeprecationWarning, match="use `photometric`") as caught:
        old = _collect(data.make_dataset(label_pairs, num_classes=8, color_jitter=True, seed=1))
    assert [w.filename for w in caught] == [__file__]
    with pytest.warns(DeprecationWarning, match="color_jitter=True") as caught:
        data.prepare_dataset(tf.data.Dataset.from_tensor_slices(
            (np.zeros((1, 4, 4, 3), "uint8"), np.zeros((1, 4, 4), "uint8"))), color_jitter=True)
    assert [w.filename for w in caught] == [__file__]
    for (image_a, mask_a), (image_b, mask_b) in zip(plain, old):
        np.testing.assert_array_equal(mask_a, mask_b)
        assert not np.array_equal(image_a, image_b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name does not warn
        data.make_dataset(label_pairs, num_classes=8, photometric=0.5, seed=1)


def test_seeded_pipelines_are_reproducible(label_pairs):
    kwargs = dict(num_classes=8, crop_size=20, scale_range=(0.5, 1.5), flip=True,
                  photometric=0.5, blur=1.0, shuffle=True, batch_size=3)
    first = _collect(data.make_dataset(label_pairs, seed=7, **kwargs))
    second = _collect(data.make_dataset(label_pairs, seed=7, **kwargs))
    other = _collect(data.make_dataset(label_pairs, seed=8, **kwargs))
    for (a, b), (c, d) in zip(first, second):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert not all(np.array_equal(a, c) for (a, _), (c, _) in zip(first, other))


def test_cache_gives_the_same_elements(label_pairs):
    """A cached pipeline gives, epoch by epoch, the values of the same pipeline uncached."""
    kwargs = dict(num_classes=8, crop_size=20, scale_range=(0.7, 1.3), flip=True, seed=2,
                  batch_size=3)
    cached = data.make_dataset(label_pairs, cache=True, **kwargs)
    plain = data.make_dataset(label_pairs, **kwargs)
    for _ in range(2):  # the first epoch fills the cache, the second reads it
        (a, b), = _collect(cached)
        (c, d), = _collect(plain)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


# ------------------------------------------------------------------------------------------
# Bad data: every error names the file and the value
# ------------------------------------------------------------------------------------------


@pytest.fixture
def bad_value_pair(tmp_path):
    mask = np.zeros((20, 50), np.uint8)
    mask[12, 40] = 37
    image = _write_image(tmp_path / "x.jpg", np.zeros((20, 50, 3)))
    return image, _write_palette_mask(tmp_path / "x.png", mask)


def test_bad_mask_value_up_front(bad_value_pair):
    expected = (r"mask '.*x\.png' has value 37 at \(12, 40\); expected 0\.\.20 "
                r"\(num_classes=21\) or ignore label 255")
    with pytest.raises(ValueError, match=expected):
        data.validate_pairs([bad_value_pair], num_classes=21)
    with pytest.raises(ValueError, match=expected):
        data.make_dataset([bad_value_pair], num_classes=21)


def test_bad_mask_value_in_pipeline(bad_value_pair):
    ds = data.make_dataset([bad_value_pair], num_classes=21, validate=False)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"x\.png' has value 37 at \(12, 40\)"):
        _collect(ds)


def test_ignore_label_is_a_parameter(bad_value_pair):
    image, mask = bad_value_pair
    with pytest.raises(ValueError, match=r"value 255 .* expected 0\.\.36 \(num_classes=37\) "
                                         r"or ignore label 37"):
        data.validate_pairs([(image, _write_palette_mask(mask + "2.png", np.full((20, 50), 255)))],
                            num_classes=37, ignore_label=37)


def test_size_mismatch(tmp_path):
    image = _write_image(tmp_path / "a.jpg", np.zeros((10, 12, 3)))
    mask = _write_image(tmp_path / "a.png", np.zeros((10, 13)))
    message = r"image '.*a\.jpg' is 10x12 \(HxW\) but mask '.*a\.png' is 10x13"
    with pytest.raises(ValueError, match=message):
        data.validate_pairs([(image, mask)], num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _collect(data.make_dataset([(image, mask)], num_classes=2, validate=False))


def test_truncated_missing_and_unpaired_files(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3))
    good_image = _write_image(tmp_path / "good.jpg", noise)
    mask = _write_image(tmp_path / "good.png", np.zeros((64, 64)))
    content = open(good_image, "rb").read()
    with open(tmp_path / "cut.jpg", "wb") as file:
        file.write(content[: int(len(content) * 0.8)])
    with pytest.raises(ValueError, match=r"cut\.jpg' is truncated"):
        data.validate_pairs([(str(tmp_path / "cut.jpg"), mask)], num_classes=2)
    with open(tmp_path / "cut.png", "wb") as file:
        file.write(open(mask, "rb").read()[:40])
    with pytest.raises(ValueError, match=r"cut\.png' is unreadable"):
        data.validate_pairs([(good_image, str(tmp_path / "cut.png"))], num_classes=2)
    with pytest.raises(ValueError, match=r"mask file '.*nope\.png' does not exist"):
        data.validate_pairs([(good_image, str(tmp_path / "nope.png"))], num_classes=2)
    with pytest.raises(ValueError, match=r"image file '.*nope\.jpg' does not exist"):
        data.validate_pairs([(str(tmp_path / "nope.jpg"), mask)], num_classes=2)
    with pytest.raises(ValueError, match=r"unpaired\. Received: pair='.*good\.jpg'"):
        data.validate_pairs([good_image], num_classes=2)


def test_rgb_mask_in_index_mode_is_explained(tmp_path):
    image = _write_image(tmp_path / "i.png", np.zeros((5, 5, 3)))
    mask = _write_image(tmp_path / "rgbmask.png", np.zeros((5, 5, 3)))
    with pytest.raises(ValueError, match=r"rgbmask\.png' has PIL mode 'RGB'.*mask_format='rgb'"):
        data.validate_pairs([(image, mask)], num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"rgbmask\.png' has 3 channels; .*"
                                                             r"\"mask_format\": \"rgb\" .* "
                                                             r"classes\.json"):
        _collect(data.make_dataset([(image, mask)], num_classes=2, validate=False))


def test_skip_bad_reports_and_drops(tmp_path, label_pairs, bad_value_pair, caplog):
    missing = (label_pairs[0][0], str(tmp_path / "missing.png"))
    pairs = label_pairs + [bad_value_pair, missing]
    report = data.validate_pairs(pairs, num_classes=21, skip_bad=True)
    assert report.num_bad == 2 and report.good == [tuple(p) for p in label_pairs]
    assert "value 37" in report.bad[0][1] and "missing.png" in report.bad[1][1]
    with caplog.at_level(logging.WARNING, logger="keras_fcn.data"):
        ds = data.make_dataset(pairs, num_classes=21, skip_bad=True)
    assert "2 bad pair(s) of 5" in caplog.text and "missing.png" in caplog.text
    assert len(_collect(ds)) == 3


def test_skip_bad_in_pipeline_drops_elements(label_pairs, bad_value_pair):
    ds = data.make_dataset(label_pairs + [bad_value_pair], num_classes=21, validate=False,
                           skip_bad=True)
    assert len(_collect(ds)) == 3


def test_prepare_dataset_skip_bad_drops_elements_that_fail():
    # the second element's image is NaN: check_numerics fails it
    bad = tf.data.Dataset.from_tensor_slices(np.array([1.0, -1.0, 1.0], "float32")).map(
        lambda v: (tf.fill([4, 4, 3], tf.debugging.check_numerics(tf.math.sqrt(v), "bad")),
                   tf.zeros([4, 4], tf.uint8)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad"):
        _collect(data.prepare_dataset(bad))
    assert len(_collect(data.prepare_dataset(bad, skip_bad=True))) == 2


def test_arguments_are_checked(label_pairs):
    with pytest.raises(ValueError, match="Received: mask_format='jpeg'"):
        data.make_dataset(label_pairs, num_classes=8, mask_format="jpeg")
    with pytest.raises(ValueError, match=r"Received: scale_range=\(2, 1\)"):
        data.make_dataset(label_pairs, num_classes=8, scale_range=(2, 1))
    with pytest.raises(ValueError, match="Received: palette=None"):
        data.make_dataset(label_pairs, num_classes=8, mask_format="rgb")
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        data.make_dataset(label_pairs, num_classes=8, batch_size=0)
    assert os.path.isfile(label_pairs[0][0])


def test_unshuffled_data_keeps_the_order_of_the_pairs(tmp_path):
    """Without shuffling, element i is pair i, also without a seed (evaluation relies on it)."""
    pairs = []
    for i in range(12):
        mask = np.full((8 + i, 9), i, np.uint8)
        image = _write_image(tmp_path / f"i{i}.png", np.zeros((8 + i, 9, 3)))
        pairs.append((image, _write_palette_mask(tmp_path / f"m{i}.png", mask)))
    ds = data.make_dataset(pairs, num_classes=21, validate=False)
    assert ds.options().deterministic is True
    assert [int(m[0, 0, 0]) for _, m in ds] == list(range(12))
    shuffled = data.make_dataset(pairs, num_classes=21, shuffle=True, validate=False)
    assert shuffled.options().deterministic is False


def test_random_flip_is_seeded_and_flips_every_tensor_together():
    image = tf.reshape(tf.range(2 * 5 * 3), (2, 5, 3))
    mask, depth = image[..., 0], tf.cast(image[..., :1], tf.float32)

    def run():  # a new pipeline with the same seed: the same flips
        ds = data.with_element_seeds(
            tf.data.Dataset.from_tensors((image, mask, depth)).repeat(16), seed=4)
        ds = ds.map(lambda element, seed: data.random_flip(seed, *element))
        return [[t.numpy() for t in element] for element in ds]

    runs = [run(), run()]
    assert [[x.tolist() for x in e] for e in runs[0]] == [[x.tolist() for x in e] for e in runs[1]]
    flips = []
    for flipped_image, flipped_mask, flipped_depth in runs[0]:
        flip = not np.array_equal(flipped_image, image.numpy())
        expected = image.numpy()[:, ::-1] if flip else image.numpy()
        np.testing.assert_array_equal(flipped_image, expected)
        np.testing.assert_array_equal(flipped_mask, expected[..., 0])
        np.testing.assert_array_equal(flipped_depth, expected[..., :1])
        flips.append(flip)
    assert 0 < sum(flips) < 16


# Review 7: argument checks that disagreed between modules.


@pytest.mark.parametrize("palette", [[0, 0, 0, 128, 0, 0], [[0, 0]], [[0, 0, 256]]])
def test_malformed_palettes_name_the_entry(palette):
    with pytest.raises(ValueError, match=r"palette\[0\] must be an \(r, g, b\) colour"):
        palette_to_table(palette)


# Audit round 5 leftovers: an 8-bit grey PNG mask is opened once, not a second time for its header.


@pytest.mark.parametrize("bits, stored, read", [(8, [0, 1, 2, 255], [0, 1, 2, 255]),
                                                (4, [0, 1, 15, 7], [0, 1, 15, 7]),
                                                (2, [0, 1, 3, 2], [0, 1, 3, 2])])
def test_grey_mask_is_opened_once(tmp_path, opens, bits, stored, read):
    path = str(tmp_path / f"mask{bits}.png")
    values = np.array([stored] * 3, np.uint8)
    Image.fromarray(values, "L").save(path, bits=bits) if bits < 8 else \
        Image.fromarray(values, "L").save(path)
    opens.clear()
    mask = data.read_mask(path)
    assert mask.dtype == np.int32 and mask.tolist() == [read] * 3
    assert opens == [("Image.open", path), ("open", path)]  # PIL's own open, and no other


# Data / datasets / weights audit, round 4: each test failed on the code before its fix.


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


_FORMAT_MESSAGE = (r"mask '{}' is {}; mask_format='index' masks must be PNG or BMP files "
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


_JPEG_MASK_MESSAGE = (r"mask '{}' is a JPEG file; mask_format='{}' masks must be {} files \(JPEG "
                      r"is lossy: near every edge its pixels are not the {} that were saved\); "
                      r"save it as PNG")


@pytest.mark.parametrize("mask_format", ["index", "rgb"])
def test_jpeg_masks_are_refused_in_both_pipelines(tmp_path, mask_format):
    """A JPEG mask of class ids 0..2 (no void) decoded to values still in 0..2 but wrong near
    the edges, and trained silently; now every reader refuses it, naming the file."""
    values = np.zeros((16, 16), np.uint8)
    values[4:12, 3:9], values[8:, 10:] = 1, 2
    mask = str(tmp_path / "m.jpg")
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    pixels = values if mask_format == "index" else np.array(palette, np.uint8)[values]
    Image.fromarray(pixels).save(mask, quality=75)
    pairs = [(_image(tmp_path / "a.png", (16, 16)), mask)]
    allowed, what = (("PNG or BMP", "class ids") if mask_format == "index"
                     else ("PNG, BMP, GIF or WebP", "palette colours"))
    expected = _JPEG_MASK_MESSAGE.format(re.escape(mask), mask_format, allowed, what)
    kwargs = dict(num_classes=3, mask_format=mask_format,
                  palette=palette if mask_format == "rgb" else None)
    for validate in (True, "headers", False):
        with pytest.raises((ValueError, tf.errors.OpError), match=expected):
            next(iter(data.make_dataset(pairs, validate=validate, **kwargs)))
    with pytest.raises(ValueError, match=expected):
        data.make_pydataset(pairs, **kwargs)[0]


def test_make_dataset_decodes_jpeg_images_as_pil(tmp_path):
    """tf.io.decode_image's fast IDCT put JPEG pixels up to 8 levels off PIL's, so
    tools/evaluate.py (tf.data) scored other pixels than tools/predict.py (PIL) predicted."""
    rng = np.random.default_rng(3)
    pixels = np.cumsum(rng.integers(0, 40, (24, 31, 3)), axis=1).astype(np.uint8)
    image = str(tmp_path / "a.jpg")
    Image.fromarray(pixels).save(image, quality=90)
    mask = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((24, 31), np.uint8)).save(mask)
    with Image.open(image) as opened:
        expected = np.asarray(opened.convert("RGB")).astype(np.float32)
    for validate in (True, False):
        got = next(iter(data.make_dataset([(image, mask)], num_classes=2, validate=validate)))
        np.testing.assert_array_equal(got[0].numpy()[0], expected)
    np.testing.assert_array_equal(data.make_pydataset([(image, mask)], num_classes=2)[0][0][0],
                                  expected)


def test_the_pipelines_refuse_a_missing_ignore_label_by_name(tmp_path):
    """ignore_label=None failed inside make_dataset with a TypeError comparing int and None,
    and in prepare_dataset's padded batches with a TensorFlow conversion error."""
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 5, 3), "uint8")).save(image)
    Image.fromarray(np.zeros((4, 5), "uint8")).save(tmp_path / "a_mask.png")
    message = (r"^The input pipeline pads masks with ignore_label .* so it needs one: pass a "
               r"value outside \[0, num_classes\), e\.g\. 255, even if no mask holds it\. "
               r"Received: ignore_label=None$")
    with pytest.raises(ValueError, match=message):
        data.make_dataset([(str(image), str(tmp_path / "a_mask.png"))], num_classes=2,
                          ignore_label=None)
    decoded = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4, 5, 3), "uint8"),
                                                  np.zeros((2, 4, 5), "uint8")))
    with pytest.raises(ValueError, match=message):
        data.prepare_dataset(decoded, ignore_label=None, batch_size=2)


def test_a_dict_palette_maps_a_void_colour_to_the_ignore_label(tmp_path):
    """docs/data.md's way to a void colour in Python (classes.json has "void_color")."""
    colours = np.zeros((4, 4, 3), np.uint8)  # black: void
    colours[0, 0], colours[1, 1] = (128, 0, 0), (0, 128, 0)
    pair = (_write_image(tmp_path / "i.png", np.zeros((4, 4, 3))),
            _write_image(tmp_path / "m.png", colours))
    palette = {(128, 0, 0): 0, (0, 128, 0): 1, (0, 0, 0): 255}
    ((_, mask),) = _collect(data.make_dataset([pair], num_classes=2, mask_format="rgb",
                                              palette=palette, batch_size=1))
    expected = np.full((4, 4), 255)
    expected[0, 0], expected[1, 1] = 0, 1
    np.testing.assert_array_equal(mask[0], expected)
    np.testing.assert_array_equal(data.read_mask(pair[1], "rgb", palette), expected)
