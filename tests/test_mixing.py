"""CutMix for segmentation (keras_fcn.data.mixing) against closed-form boxes and numpy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_fcn.data.mixing import box_masks, cutmix, cutmix_draws
from keras_fcn.data.pipeline import prepare_dataset
from keras_fcn.training.config import TrainConfig


def _numpy_box(apply, area, cy, cx, height, width):
    box = np.zeros((height, width), bool)
    if apply:
        side = np.sqrt(area)
        h, w = np.round(side * height), np.round(side * width)
        top, left = np.round(cy * height - h / 2), np.round(cx * width - w / 2)
        rows = (np.arange(height) >= top) & (np.arange(height) < top + h)
        cols = (np.arange(width) >= left) & (np.arange(width) < left + w)
        box = rows[:, None] & cols[None, :]
    return box


@pytest.mark.parametrize("draw", [
    (1.0, 0.25, 0.5, 0.5),    # centred quarter: rows 5..14 of 20, cols 8..23 of 32
    (1.0, 1.0, 0.5, 0.5),     # the whole image
    (1.0, 0.5, 0.0, 0.99),    # clipped at the top and the right
    (1.0, 0.0, 0.3, 0.3),     # empty box
    (0.0, 0.9, 0.5, 0.5),     # not applied
])
def test_box_masks_are_the_closed_form(draw):
    box = box_masks(tf.constant([draw], tf.float32), 20, 32)[0].numpy()
    np.testing.assert_array_equal(box, _numpy_box(*draw, 20, 32))


def test_centred_quarter_box_is_exact():
    box = box_masks(tf.constant([[1.0, 0.25, 0.5, 0.5]]), 20, 32)[0].numpy()
    expected = np.zeros((20, 32), bool)
    expected[5:15, 8:24] = True
    np.testing.assert_array_equal(box, expected)


def test_cutmix_pastes_the_next_images_box_pixels_and_labels():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, 12, 16, 3)).astype("float32")
    masks = rng.integers(0, 5, (3, 12, 16)).astype("int32")
    draws = np.array([[1, 0.3, 0.4, 0.6], [0, 0.5, 0.5, 0.5], [1, 0.6, 0.9, 0.1]], "float32")
    out_images, out_masks = cutmix(tf.constant(images), tf.constant(masks), tf.constant(draws))
    for i in range(3):
        box = _numpy_box(*draws[i], 12, 16)
        j = (i + 1) % 3
        np.testing.assert_array_equal(out_images[i].numpy(),
                                      np.where(box[..., None], images[j], images[i]))
        np.testing.assert_array_equal(out_masks[i].numpy(), np.where(box, masks[j], masks[i]))


def test_draws_are_seeded_and_follow_the_probability():
    seeds = [tf.constant(1000 + i, tf.int64) for i in range(400)]
    draws = np.array([cutmix_draws(s, 0.25).numpy() for s in seeds])
    again = np.array([cutmix_draws(s, 0.25).numpy() for s in seeds[:5]])
    np.testing.assert_array_equal(draws[:5], again)
    assert set(np.unique(draws[:, 0])) == {0.0, 1.0}
    assert abs(draws[:, 0].mean() - 0.25) < 0.07
    assert draws[:, 1:].min() >= 0 and draws[:, 1:].max() < 1


def _constant_images(count=4, size=(20, 30)):
    images = np.stack([np.full(size + (3,), 40 * i, np.uint8) for i in range(count)])
    masks = np.stack([np.full(size, i, np.uint8) for i in range(count)])
    return tf.data.Dataset.from_tensor_slices((images, masks))


def test_cutmix_in_the_pipeline_keeps_pixels_and_labels_together():
    ds = prepare_dataset(_constant_images(), batch_size=4, crop_size=(20, 30), cutmix=1.0,
                         seed=3)
    mixed = 0
    for images, masks in ds.take(2):
        images, masks = images.numpy(), masks.numpy()
        for i in range(4):
            # every pixel carries the colour of the image its label comes from
            np.testing.assert_allclose(images[i, ..., 0], 40.0 * masks[i])
            labels = np.unique(masks[i])
            assert len(labels) <= 2
            mixed += len(labels) == 2
    assert mixed >= 4
    off = prepare_dataset(_constant_images(), batch_size=4, crop_size=(20, 30), seed=3)
    for _, masks in off.take(1):
        assert all(len(np.unique(m)) == 1 for m in masks.numpy())


@pytest.mark.parametrize("options, match", [
    ({"cutmix": 1.5, "crop_size": (20, 30)}, "cutmix=1.5"),
    ({"cutmix": True, "crop_size": (20, 30)}, "probability"),
    ({"cutmix": 0.5}, "crop_size"),
])
def test_bad_cutmix_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        prepare_dataset(_constant_images(), batch_size=2, **options)


def test_cutmix_needs_one_static_size():
    spec = tf.TensorSpec((None, None, None, 3), tf.float32)

    @tf.function(input_signature=[spec])
    def run(images):
        return cutmix(images, tf.zeros(tf.shape(images)[:3], tf.int32), tf.zeros((1, 4)))

    with pytest.raises(ValueError, match="one static size"):
        run.get_concrete_function()


def test_config_default_is_off():
    assert TrainConfig().cutmix == 0.0


def _write_constant_pairs(folder, count=4, size=(20, 30)):
    from PIL import Image

    pairs = []
    for i in range(count):
        image, mask = folder / f"{i}.png", folder / f"{i}_label.png"
        Image.fromarray(np.full(size + (3,), 40 * i, np.uint8)).save(image)
        Image.fromarray(np.full(size, i, np.uint8)).save(mask)
        pairs.append((str(image), str(mask)))
    return pairs


def test_make_dataset_passes_cutmix_on_and_off_is_bit_identical(tmp_path):
    from keras_fcn.data.pipeline import make_dataset

    pairs = _write_constant_pairs(tmp_path)
    common = dict(num_classes=4, batch_size=4, crop_size=(20, 30), flip=True, seed=5)
    plain = [b.numpy() for b in next(iter(make_dataset(pairs, **common)))]
    off = [b.numpy() for b in next(iter(make_dataset(pairs, cutmix=0.0, **common)))]
    for a, b in zip(plain, off):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    images, masks = [b.numpy() for b in next(iter(make_dataset(pairs, cutmix=1.0, **common)))]
    np.testing.assert_allclose(images[..., 0], 40.0 * masks)
    assert sum(len(np.unique(m)) == 2 for m in masks) >= 2
    with pytest.raises(ValueError, match="cutmix=-0.5"):
        make_dataset(pairs, cutmix=-0.5, **common)
