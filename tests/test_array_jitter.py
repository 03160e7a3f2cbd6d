"""keras_fcn.data.jitter: the NumPy colour jitter against the tf.data one and a step-by-step
float64 reference, its draws, and `photometric` of the NumPy PyDataset (images only, the other
draws of a seed unchanged)."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_fcn.data import arrays, jitter
from keras_fcn.data.jitter import apply_jitter, hue_matrix, jitter_factors, photometric_ranges

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = np.array([0.299, 0.587, 0.114])
# (brightness shift, contrast, saturation, hue angle): identity, hue turns both ways, strong
# factors that clip at 0 and at 255
FACTOR_SETS = [(0.0, 1.0, 1.0, 0.0), (20.0, 1.3, 0.7, 0.4), (-40.0, 0.6, 1.4, -0.5),
               (64.0, 1.5, 1.5, 0.6), (-64.0, 1.5, 0.5, 0.0)]


def _image(seed=0, shape=(13, 17, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def _reference(image, factors):
    """Jitter step by step in float64: shift, contrast about the mean, saturation about the
    gray level, Rodrigues' rotation about the gray axis (column vectors), clip."""
    shift, contrast, saturation, angle = factors
    x = image.astype(np.float64) + shift
    x = x.mean() + contrast * (x - x.mean())
    gray = (x @ WEIGHTS)[..., None]
    x = gray + saturation * (x - gray)
    u = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    rotation = (math.cos(angle) * np.eye(3) + math.sin(angle) * cross
                + (1 - math.cos(angle)) * np.outer(u, u))
    return np.clip(x @ rotation.T, 0, 255)


@pytest.mark.parametrize("factors", FACTOR_SETS)
def test_apply_jitter_is_the_step_by_step_jitter_and_the_tf_one(factors):
    image = _image()
    out = apply_jitter(image, factors)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, _reference(image, factors), atol=1e-3)
    if factors[0] == 64.0:
        assert (out == 255).any() and (out == 0).any()  # the clip is exercised
    tf = pytest.importorskip("tensorflow")
    from keras_fcn.data import augment

    expected = augment.apply_jitter(tf.constant(image[None]),
                                    tf.constant([factors], tf.float32))[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_hue_only_keeps_gray_and_turns_colours_about_it():
    levels = np.random.default_rng(1).uniform(0, 255, (9, 7, 1)).astype(np.float32)
    gray = np.repeat(levels, 3, axis=-1)
    np.testing.assert_allclose(apply_jitter(gray, [0.0, 1.0, 1.0, 0.5]), gray, atol=1e-4)
    colour = _image(2) * 0.5 + 60  # away from the clip
    turned = apply_jitter(colour, [0.0, 1.0, 1.0, 0.5])
    assert np.abs(turned - colour).max() > 10  # the hue moved
    np.testing.assert_allclose(turned.sum(-1), colour.sum(-1), rtol=1e-5)  # brightness kept
    chroma = lambda x: np.linalg.norm(x - x.mean(-1, keepdims=True), axis=-1)  # noqa: E731
    np.testing.assert_allclose(chroma(turned), chroma(colour), rtol=1e-4, atol=1e-3)
    assert hue_matrix(0.0).tolist() == np.eye(3).tolist()  # exactly the identity at 0


@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_drawn_factors_lie_in_the_photometric_ranges_and_follow_the_seed(strength):
    ranges = photometric_ranges(strength)
    draws = np.stack([jitter_factors(np.random.default_rng([5, i]), **ranges)
                      for i in range(300)])
    assert draws.dtype == np.float32
    low = [-64 * strength, 1 - strength / 2, 1 - strength / 2, -0.2 * math.pi * strength]
    high = [64 * strength, 1 + strength / 2, 1 + strength / 2, 0.2 * math.pi * strength]
    assert (draws >= np.float32(low)).all() and (draws <= np.float32(high)).all()
    # spread over most of each range, not stuck at one value
    assert (np.ptp(draws, axis=0) > 0.8 * (np.array(high) - np.array(low))).all()
    again = np.stack([jitter_factors(np.random.default_rng([5, i]), **ranges)
                      for i in range(300)])
    np.testing.assert_array_equal(draws, again)
    other = jitter_factors(np.random.default_rng([6, 0]), **ranges)
    assert not np.array_equal(other, draws[0])
    # the draws are uniform(brightness), uniform(contrast), uniform(saturation), hue in turns
    rng = np.random.default_rng([5, 0])
    expected = [rng.uniform(-64 * strength, 64 * strength), rng.uniform(*ranges["contrast"]),
                rng.uniform(*ranges["saturation"]), rng.uniform(-ranges["hue"], ranges["hue"])
                * 2 * math.pi]
    np.testing.assert_allclose(draws[0], expected, rtol=1e-6)


def test_no_hue_gives_an_angle_of_exactly_zero():
    factors = jitter_factors(np.random.default_rng(3), **dict(photometric_ranges(0.5), hue=0.0))
    assert factors[3] == 0.0
    np.testing.assert_array_equal(factors, jitter_factors(np.random.default_rng(3)))


@pytest.mark.parametrize("bad, shown", [(-1, "-1.0"), (2, "2.0"), (float("nan"), "nan"),
                                        ("strong", "'strong'"), (None, "None")])
def test_bad_strengths_raise_naming_the_value(tmp_path, bad, shown):
    pairs = _write_pairs(tmp_path, [(8, 8)])
    message = rf"`photometric` must be in \(0, 1\] \(0: off\). Received: photometric={shown}"
    for build in (arrays.SegmentationPyDataset, arrays.make_pydataset):
        with pytest.raises(ValueError, match=message):
            build(pairs, num_classes=3, photometric=bad)
    with pytest.raises(ValueError, match=message):
        photometric_ranges(bad)


def _write_pairs(folder, sizes):
    rng = np.random.default_rng(0)
    pairs = []
    for i, (height, width) in enumerate(sizes):
        image_path, mask_path = str(folder / f"image_{i}.png"), str(folder / f"mask_{i}.png")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(image_path)
        Image.fromarray(rng.choice([0, 1, 2, 255], (height, width)).astype(np.uint8)).save(
            mask_path)
        pairs.append((image_path, mask_path))
    return pairs


def _replayed_factors(ds, pair_index, epoch, draws, strength):
    """The jitter factors of an element: its generator after the draws of the other steps
    (`draws(rng)`), as `SegmentationPyDataset._augment` consumes them."""
    rng = np.random.default_rng([ds.seed, epoch, arrays._ELEMENT_STREAM, pair_index])
    draws(rng)
    return jitter_factors(rng, **photometric_ranges(strength))


def test_pydataset_jitters_images_after_crop_and_flip_and_never_masks(tmp_path):
    pairs = _write_pairs(tmp_path, [(20, 24), (14, 30), (22, 26), (16, 28)])  # some < crop
    kwargs = dict(num_classes=3, crop_size=(18, 22), batch_size=2, flip=True, shuffle=True,
                  seed=7)
    plain = arrays.make_pydataset(pairs, **kwargs)
    jittered = arrays.make_pydataset(pairs, photometric=1.0, **kwargs)
    padded = 0
    for epoch in (0, 1):
        order = plain.epoch_order(epoch)
        for index in range(len(plain)):
            images, masks = plain.batch(index, epoch)
            got, got_masks = jittered.batch(index, epoch)
            np.testing.assert_array_equal(got_masks, masks)  # same crops and flips
            assert np.abs(got - images).max() > 1.0
            for k, pair_index in enumerate(order[2 * index:2 * index + 2]):
                height, width = arrays.read_image(pairs[pair_index][0]).shape[:2]

                def draws(rng, height=height, width=width):  # crop window, then flip
                    rng.integers(0, max(height, 18) - 18 + 1)
                    rng.integers(0, max(width, 22) - 22 + 1)
                    rng.random()

                factors = _replayed_factors(plain, int(pair_index), epoch, draws, 1.0)
                np.testing.assert_allclose(got[k], apply_jitter(images[k], factors), atol=1e-3)
                if height < 18:  # the mean-colour padding is jittered too
                    padded += 1
                    np.testing.assert_array_equal(images[k, -1], np.broadcast_to(
                        arrays.MEAN_RGB, (22, 3)).astype(np.float32))
                    assert not np.allclose(got[k, -1], images[k, -1], atol=0.5)
    assert padded == 4  # two short images, two epochs


def test_pydataset_jitter_alone_and_with_scale_and_blur(tmp_path):
    pairs = _write_pairs(tmp_path, [(12, 16), (12, 16), (12, 16)])
    plain = arrays.SegmentationPyDataset(pairs, num_classes=3, seed=3)
    alone = arrays.SegmentationPyDataset(pairs, num_classes=3, seed=3, photometric=0.5)
    for i in range(3):  # no other augmentation: element() still jitters
        image, mask = plain[i]
        got, got_mask = alone[i]
        np.testing.assert_array_equal(got_mask, mask)
        factors = _replayed_factors(plain, i, 0, lambda rng: None, 0.5)
        np.testing.assert_allclose(got[0], apply_jitter(image[0], factors), atol=1e-3)
        assert np.abs(got - image).max() > 1.0
    kwargs = dict(num_classes=3, crop_size=(10, 14), batch_size=3, scale_range=(0.8, 1.5),
                  flip=True, blur=1.0, seed=11)
    reference = arrays.make_pydataset(pairs, **kwargs)
    off = arrays.make_pydataset(pairs, photometric=0, **kwargs)
    on = arrays.make_pydataset(pairs, photometric=0.8, **kwargs)
    assert off.jitter_ranges is None and off.photometric == 0.0
    for epoch in (0, 1, 2):
        images, masks = reference.batch(0, epoch)
        off_images, off_masks = off.batch(0, epoch)
        assert off_images.tobytes() == images.tobytes()  # photometric=0 is today's data
        assert off_masks.tobytes() == masks.tobytes()
        on_images, on_masks = on.batch(0, epoch)
        np.testing.assert_array_equal(on_masks, masks)  # scale, crop, flip draws unchanged
        assert 0.0 <= on_images.min() and on_images.max() <= 255.0
        assert np.abs(on_images - images).max() > 1.0


def test_re_exports_and_no_tensorflow_in_the_jitter_module():
    from keras_fcn import data
    from keras_fcn.data.arrays import blur_radius, gaussian_blur

    assert data.photometric_ranges is jitter.photometric_ranges
    assert (gaussian_blur, blur_radius) == (jitter.gaussian_blur, jitter.blur_radius)
    if "tensorflow" in sys.modules:
        from keras_fcn.data import augment

        assert augment.photometric_ranges is jitter.photometric_ranges
        assert augment.blur_radius is jitter.blur_radius
    # keras_fcn itself imports TensorFlow where it is installed: load the file on its own
    path = os.path.join(ROOT, "keras_fcn", "data", "jitter.py")
    code = ("import importlib.util, sys, numpy as np\n"
            f"spec = importlib.util.spec_from_file_location('standalone_jitter', {path!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(module)\n"
            "out = module.apply_jitter(np.full((2, 2, 3), 9.0), [1.0, 1.0, 1.0, 0.3])\n"
            "module.gaussian_blur(out, 1.0, 3)\n"
            "bad = [m for m in ('tensorflow', 'keras', 'keras_fcn') if m in sys.modules]\n"
            "assert not bad, bad\n"
            "print('ok', float(out[0, 0, 0]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok 10.0")
