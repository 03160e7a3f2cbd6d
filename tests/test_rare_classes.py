"""Rare-class crops and copy-paste (keras_fcn.data.rare; issue 16), and their training flags."""

import types

import numpy as np
import pytest
import tensorflow as tf

from keras_fcn.data.augment import make_element_fn
from keras_fcn.data.pipeline import prepare_dataset
from keras_fcn.data.rare import check_rare_options, copy_paste_rare
from keras_fcn.training.config import TrainConfig, config_from_flags, define_flags
from keras_fcn.training.config import parse_class_ids
from keras_fcn.training.inputs import resolve_rare_classes

CROP = (8, 10)
# Windows (top, left) of the 8x10 crop of a 20x30 image before rare crops existed.
PINNED_WINDOWS = {1: (4, 5), 7: (10, 9), -3: (6, 18)}


def _position_mask(height=20, width=30):
    """Each pixel's id is its position, so a crop's first pixel gives its window."""
    return np.arange(height * width, dtype=np.int32).reshape(height, width)


def _crops(mask, seeds, flip=False, **rare):
    """Cropped masks of `mask` (graph mode, through tf.data) for each element seed."""
    fn = make_element_fn(ignore_label=255, crop_size=CROP, scale_range=None, flip=flip, **rare)
    image = tf.zeros(mask.shape + (3,), tf.uint8)
    seeds = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64))
    return [m.numpy() for _, m in seeds.map(lambda s: fn((image, tf.constant(mask)), s))]


def _window(crop):
    return divmod(int(crop[0, 0]), 30)


def test_rare_crops_off_keep_the_windows_of_before():
    for rare in ({}, {"rare_crops": 0.0, "rare_classes": (9,)}):
        crops = _crops(_position_mask(), list(PINNED_WINDOWS), **rare)
        assert {s: _window(c) for s, c in zip(PINNED_WINDOWS, crops)} == PINNED_WINDOWS


def test_rare_crops_fall_back_to_the_uniform_window_without_a_rare_pixel():
    crops = _crops(_position_mask(), list(PINNED_WINDOWS), rare_crops=1.0,
                   rare_classes=(600,))  # no pixel has id 600
    assert [_window(c) for c in crops] == list(PINNED_WINDOWS.values())


def test_every_rare_crop_is_centred_on_the_one_rare_pixel():
    mask = np.zeros((20, 30), np.int32)
    mask[3, 27] = 9
    seeds = list(range(40))
    for crop in _crops(mask, seeds, rare_crops=1.0, rare_classes=(9, 10)):
        # centre (3 - 4, 27 - 5) clipped into [0, 12] x [0, 20]: window (0, 20)
        assert crop[3, 7] == 9 and (crop == 9).sum() == 1
    flipped = _crops(mask, seeds, flip=True, rare_crops=1.0, rare_classes=(9,))
    assert all((crop == 9).sum() == 1 for crop in flipped)
    uniform = _crops(mask, seeds, rare_crops=0.0, rare_classes=(9,))
    # a uniform window holds it with probability 4/13 * 3/21
    assert sum((crop == 9).sum() for crop in uniform) < 10


def test_rare_crops_are_seeded_and_uniform_over_the_rare_pixels():
    mask = np.zeros((20, 30), np.int32)
    mask[2, 2] = mask[17, 27] = 9  # too far apart for one window
    crops = _crops(mask, list(range(30)), rare_crops=1.0, rare_classes=(9,))
    again = _crops(mask, list(range(30)), rare_crops=1.0, rare_classes=(9,))
    np.testing.assert_array_equal(crops, again)
    found = [(int(c[2, 2] == 9), int(c[5, 7] == 9)) for c in crops]  # windows (0,0), (12,20)
    assert all(sum(f) == 1 for f in found)
    assert 5 < sum(f[0] for f in found) < 25
    half = _crops(mask, list(range(30)), rare_crops=0.5, rare_classes=(9,))
    assert 0 < sum((c == 9).any() for c in half) < 30


def test_rare_crop_of_an_image_smaller_than_the_crop_is_padded():
    image = tf.fill([6, 8, 3], tf.constant(200, tf.uint8))
    mask = np.zeros((6, 8), np.uint8)
    mask[5, 1] = 9
    ds = tf.data.Dataset.from_tensors((image, tf.constant(mask))).repeat(4)
    batch = next(iter(prepare_dataset(ds, batch_size=4, crop_size=CROP, rare_crops=1.0,
                                      rare_classes=(9,), seed=0)))
    masks = batch[1].numpy()
    assert masks.shape == (4, 8, 10) and (masks == 9).sum(axis=(1, 2)).tolist() == [1] * 4
    assert (masks == 255).sum(axis=(1, 2)).tolist() == [80 - 48] * 4


def _numpy_paste(images, masks, paste, rare_classes):
    source_images, source_masks = np.roll(images, -1, 0), np.roll(masks, -1, 0)
    chosen = np.isin(source_masks, rare_classes) & np.asarray(paste)[:, None, None]
    return (np.where(chosen[..., None], source_images, images),
            np.where(chosen, source_masks, masks))


def _batch(count=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 4, 5, 3)).astype(np.float32)
    masks = rng.integers(0, 4, (count, 4, 5)).astype(np.uint8)
    return images, masks


def test_copy_paste_is_the_closed_form_where():
    images, masks = _batch()
    for paste in ([True, False, True], [True, True, True], [False] * 3):
        got = copy_paste_rare(tf.constant(images), tf.constant(masks), tf.constant(paste), (2, 3))
        expected = _numpy_paste(images, masks, paste, [2, 3])
        np.testing.assert_array_equal(got[0].numpy(), expected[0])
        np.testing.assert_array_equal(got[1].numpy(), expected[1])
        assert got[1].dtype == tf.uint8
        assert np.array_equal(expected[1], masks) == (not any(paste))


def _pipeline_batch(images, masks, **options):
    ds = tf.data.Dataset.from_tensor_slices((images.astype(np.uint8), masks))
    return [t.numpy() for t in next(iter(prepare_dataset(
        ds, batch_size=len(images), crop_size=images.shape[1:3], seed=3, **options)))]


def test_copy_paste_in_the_pipeline():
    images, masks = _batch(seed=1)
    plain = _pipeline_batch(images, masks, flip=True)
    off = _pipeline_batch(images, masks, flip=True, copy_paste=0.0, rare_classes=(2, 3))
    for a, b in zip(plain, off):  # bit-identical
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    pasted = _pipeline_batch(images, masks, flip=True, copy_paste=1.0, rare_classes=(2, 3))
    expected = _numpy_paste(*plain, [True] * 3, [2, 3])
    np.testing.assert_array_equal(pasted[0], expected[0])
    np.testing.assert_array_equal(pasted[1], expected[1])
    half = [_pipeline_batch(images, masks, copy_paste=0.5, rare_classes=(2, 3))
            for _ in range(2)]
    np.testing.assert_array_equal(half[0][0], half[1][0])  # seeded


@pytest.mark.parametrize("options, named", [
    ({"rare_crops": 1.5, "rare_classes": (2,)}, "rare_crops=1.5"),
    ({"copy_paste": -0.1, "rare_classes": (2,)}, "copy_paste=-0.1"),
    ({"rare_crops": 0.5, "rare_classes": ()}, "rare_classes=()"),
    ({"copy_paste": 0.5, "rare_classes": (2, 11)}, "rare_classes=(2, 11)"),
    ({"rare_crops": 0.5, "rare_classes": (-1,)}, "rare_classes=(-1,)"),
    ({"rare_crops": 0.5, "rare_classes": "auto"}, "rare_classes='auto'"),
])
def test_bad_options_are_named(options, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        check_rare_options(num_classes=11, **options)


def test_bad_config_values_are_named():
    info = types.SimpleNamespace(num_classes=11, ignore_label=11)
    with pytest.raises(ValueError, match=r"rare_classes=\(11,\)"):
        resolve_rare_classes(TrainConfig(rare_crops=0.5, rare_classes=(11,)), info, None)
    with pytest.raises(ValueError, match="copy_paste=2.0"):
        resolve_rare_classes(TrainConfig(copy_paste=2.0, rare_classes=(1,)), info, None)
    for text in ("2,x", "-1", "1.5"):
        with pytest.raises(ValueError, match=f"rare_classes='{text}'"):
            parse_class_ids(text)
    with pytest.raises(ValueError, match="crop_size=None"):
        prepare_dataset(tf.data.Dataset.range(1), copy_paste=0.5, rare_classes=(1,))


def test_flags_parse_to_the_config():
    from absl import flags

    values = flags.FlagValues()
    define_flags(flag_values=values, rare_classes="auto")
    values(["train", "--rare_crops=0.5", "--copy_paste=0.25"])
    config = config_from_flags(values)
    assert (config.rare_crops, config.copy_paste, config.rare_classes) == (0.5, 0.25, "auto")
    values(["train", "--rare_classes=0,9"])
    assert config_from_flags(values).rare_classes == (0, 9)


def test_auto_picks_the_classes_rarer_than_the_median():
    # Per 10x10 image: 50, 30, 15 and 5 pixels of classes 0-3 (none of class 4), void 0.
    mask = np.repeat(np.array([0, 1, 2, 3], np.uint8), [50, 30, 15, 5]).reshape(10, 10)
    decoded = tf.data.Dataset.from_tensors((tf.zeros([10, 10, 3]), mask)).repeat(2)
    info = types.SimpleNamespace(num_classes=5, ignore_label=255)
    # median frequency 22.5 / 100 of the four present classes: weights 0.45, 0.75, 1.5, 4.5
    config = TrainConfig(rare_crops=0.5, rare_classes="auto")
    assert resolve_rare_classes(config, info, decoded) == (2, 3)
    off = TrainConfig(rare_classes="auto")  # no option on: nothing computed
    assert resolve_rare_classes(off, info, None) == ()
