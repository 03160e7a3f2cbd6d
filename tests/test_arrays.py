"""keras_fcn.data.arrays: the NumPy PyDataset against make_dataset and closed forms, its
errors, and Model.fit on it: under TensorFlow here, under JAX and PyTorch without TensorFlow."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn import data
from keras_fcn.data import make_dataset
from keras_fcn.data.arrays import (
    SegmentationPyDataset,
    make_pydataset,
    read_image,
    resize_image,
    resize_mask,
)
from keras_fcn.labels import MEAN_RGB
from keras_fcn.labels import voc_palette

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = np.array(MEAN_RGB, np.float32)
LABELS = (0, 1, 2, 255)  # 3 classes and the void label
RGB_PALETTE = [(0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200)]


def _write_mask(path, mask, kind):
    """Writes `mask` as an L-mode PNG ("index"), a VOC palette PNG ("palette"), a colour PNG
    through RGB_PALETTE ("rgb") or an SBD .mat ("sbd_mat"); returns the path."""
    path = str(path)
    if kind == "index":
        Image.fromarray(mask.astype(np.uint8), mode="L").save(path)
    elif kind == "palette":
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette([c for colour in voc_palette() for c in colour])
        image.save(path)
    elif kind == "rgb":
        Image.fromarray(np.array(RGB_PALETTE, np.uint8)[mask]).save(path)
    else:
        import scipy.io

        scipy.io.savemat(path, {"GTcls": {"Segmentation": mask.astype(np.uint8)}})
    return path


def _write_pairs(folder, sizes, kind="index", seed=0, labels=LABELS):
    """Random RGB PNG images and masks of the given (height, width) sizes."""
    rng = np.random.default_rng(seed)
    ext = {"sbd_mat": "mat"}.get(kind, "png")
    pairs = []
    for i, (height, width) in enumerate(sizes):
        image_path = str(folder / f"image_{i}.png")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(image_path)
        mask = rng.choice(labels, (height, width))
        pairs.append((image_path, _write_mask(folder / f"mask_{i}.{ext}", mask, kind)))
    return pairs


def _batches(ds):
    """Every batch of an epoch, as numpy, for a tf.data dataset or a PyDataset."""
    if isinstance(ds, keras.utils.PyDataset):
        return [ds[i] for i in range(len(ds))]
    return [(image.numpy(), mask.numpy()) for image, mask in ds]


def _assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for (image, mask), (ref_image, ref_mask) in zip(got, expected):
        assert image.dtype == np.float32 and mask.dtype == np.int32
        np.testing.assert_array_equal(image, ref_image)
        np.testing.assert_array_equal(mask, ref_mask)


@pytest.mark.parametrize("kind", ["index", "palette", "rgb", "sbd_mat"])
def test_batches_equal_make_dataset(tmp_path, kind):
    # RGB_PALETTE has no colour for 255: rgb masks hold class 3 where the others hold void.
    labels = (0, 1, 2, 3) if kind == "rgb" else LABELS
    pairs = _write_pairs(tmp_path, [(9, 13)] * 5, kind, labels=labels)
    options = dict(num_classes=4 if kind == "rgb" else 3, batch_size=2,
                   mask_format={"palette": "index"}.get(kind, kind),
                   palette=RGB_PALETTE if kind == "rgb" else None)
    _assert_same_batches(_batches(make_pydataset(pairs, **options)),
                         _batches(make_dataset(pairs, **options)))


def test_whole_images_of_mixed_sizes_equal_make_dataset_with_batch_size_1(tmp_path):
    pairs = _write_pairs(tmp_path, [(9, 13), (16, 7), (5, 5)])
    _assert_same_batches(_batches(make_pydataset(pairs, num_classes=3)),
                         _batches(make_dataset(pairs, num_classes=3)))


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_fixed_scale_and_padding_crop_equal_make_dataset(tmp_path, scale):
    """A one-point scale range and a crop larger than the scaled image leave no random choice:
    both pipelines must give the same pixels, padding included."""
    pairs = _write_pairs(tmp_path, [(9, 13), (10, 12)])
    options = dict(num_classes=3, scale_range=(scale, scale), crop_size=(21, 22), batch_size=2)
    _assert_same_batches(_batches(make_pydataset(pairs, **options)),
                         _batches(make_dataset(pairs, **options)))


def test_image_size_matches_the_training_resize(tmp_path):
    from keras_fcn.training.inputs import resize_pair

    pairs = _write_pairs(tmp_path, [(37, 29), (8, 11)])
    for size in [(16, 20), (45, 40)]:  # down (antialiased) and up
        ds = make_pydataset(pairs, num_classes=3, image_size=size, batch_size=2)
        images, masks = ds[0]
        assert images.shape == (2, *size, 3) and masks.shape == (2, *size)
        for image, mask, (image_path, mask_path) in zip(images, masks, pairs):
            decoded = tf.io.decode_png(tf.io.read_file(image_path), channels=3)
            source_mask = np.asarray(Image.open(mask_path)).astype(np.int32)
            ref_image, ref_mask = resize_pair(decoded, tf.constant(source_mask), size)
            np.testing.assert_allclose(image, ref_image.numpy(), rtol=0, atol=1e-3)
            np.testing.assert_array_equal(mask, ref_mask.numpy())


def test_resize_helpers_equal_tf_image_resize():
    rng = np.random.default_rng(1)
    for _ in range(40):
        height, width, out_h, out_w = (int(v) for v in rng.integers(1, 50, 4))
        image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        mask = rng.integers(0, 9, (height, width)).astype(np.int32)
        size = (out_h, out_w)
        as_float = tf.cast(image, tf.float32)
        np.testing.assert_array_equal(resize_image(image, size),
                                      tf.image.resize(as_float, size, "bilinear").numpy())
        np.testing.assert_allclose(
            resize_image(image, size, antialias=True),
            tf.image.resize(as_float, size, "bilinear", antialias=True).numpy(), atol=1e-3)
        np.testing.assert_array_equal(
            resize_mask(mask, size), tf.image.resize(mask[..., None], size, "nearest")[..., 0])


def test_jpeg_is_decoded_with_the_accurate_idct(tmp_path):
    """PIL's JPEG pixels are libjpeg's accurate integer IDCT: TF's with
    dct_method="INTEGER_ACCURATE" (tf.io.decode_image's default, the fast IDCT, differs by a
    few levels)."""
    rng = np.random.default_rng(2)
    pixels = np.cumsum(rng.integers(0, 40, (24, 31, 3)), axis=1).astype(np.uint8)
    for subsampling in (0, 2):  # 4:4:4 and 4:2:0
        path = str(tmp_path / f"image_{subsampling}.jpg")
        Image.fromarray(pixels).save(path, quality=90, subsampling=subsampling)
        ref = tf.io.decode_jpeg(tf.io.read_file(path), channels=3,
                                dct_method="INTEGER_ACCURATE")
        np.testing.assert_array_equal(read_image(path), ref.numpy())


def test_flip_reverses_width_of_image_and_mask(tmp_path):
    pairs = _write_pairs(tmp_path, [(6, 9)] * 4 + [(4, 5)] * 2)
    for crop_size in [None, (8, 11)]:  # with a padding crop, the padding moves to the left
        plain = make_pydataset(pairs, num_classes=3, crop_size=crop_size)
        flipping = make_pydataset(pairs, num_classes=3, crop_size=crop_size, flip=True, seed=4)
        flips = []
        for epoch in range(3):
            flipping.epoch = epoch
            flips += _flips(_batches(flipping), _batches(plain))
        assert 0 < sum(flips) < len(flips)


def _flips(batches, plain):
    """Whether each batch is its plain batch mirrored left-right (image and mask alike), or
    the plain batch itself; an assertion error for anything else."""
    flips = []
    for (image, mask), (ref_image, ref_mask) in zip(batches, plain):
        flipped = not np.array_equal(mask, ref_mask)
        flips.append(flipped)
        if flipped:
            ref_image, ref_mask = ref_image[:, :, ::-1], ref_mask[:, :, ::-1]
        np.testing.assert_array_equal(image, ref_image)
        np.testing.assert_array_equal(mask, ref_mask)
    return flips


def test_crop_pads_image_with_the_mean_and_mask_with_ignore(tmp_path):
    pairs = _write_pairs(tmp_path, [(5, 6)])
    source = read_image(pairs[0][0]).astype(np.float32)
    source_mask = np.asarray(Image.open(pairs[0][1])).astype(np.int32)
    ds = make_pydataset(pairs, num_classes=3, crop_size=(8, 9), ignore_label=255, seed=0)
    image, mask = (a[0] for a in ds[0])
    assert image.shape == (8, 9, 3) and mask.shape == (8, 9)
    np.testing.assert_array_equal(image[:5, :6], source)
    np.testing.assert_array_equal(mask[:5, :6], source_mask)
    padded = np.ones((8, 9), bool)
    padded[:5, :6] = False
    np.testing.assert_array_equal(image[padded], np.broadcast_to(MEAN, (padded.sum(), 3)))
    assert (mask[padded] == 255).all()
    # A given mean colour, and a crop inside the image: a window of the source.
    coloured = make_pydataset(pairs, num_classes=3, crop_size=(3, 7), mean_rgb=(1, 2, 3), seed=1)
    image, mask = (a[0] for a in coloured[0])
    assert (image[:, 6] == [1, 2, 3]).all() and (mask[:, 6] == 255).all()
    windows = [top for top in range(3) if np.array_equal(image[:, :6], source[top:top + 3])]
    assert len(windows) == 1
    np.testing.assert_array_equal(mask[:, :6], source_mask[windows[0]:windows[0] + 3])


def test_random_scale_keeps_labels_and_gives_the_scaled_size(tmp_path):
    pairs = _write_pairs(tmp_path, [(20, 30)] * 4)
    ds = make_pydataset(pairs, num_classes=3, scale_range=(0.5, 2.0), shuffle=True, seed=3)
    sizes = set()
    for epoch in range(3):
        ds.epoch = epoch
        for image, mask in _batches(ds):
            assert set(np.unique(mask)) <= set(LABELS)  # nearest: no blended labels
            height, width = mask.shape[1:]
            assert image.shape == (1, height, width, 3)
            assert 10 <= height <= 40 and 15 <= width <= 60
            assert abs(width / height - 1.5) < 0.1  # one factor for both sides
            sizes.add((height, width))
    assert len(sizes) > 3
    cropped = make_pydataset(pairs, num_classes=3, scale_range=(0.5, 2.0), crop_size=16,
                             batch_size=4, seed=3)
    images, masks = cropped[0]
    assert images.shape == (4, 16, 16, 3) and set(np.unique(masks)) <= set(LABELS)


def test_seed_gives_identical_epochs_and_epochs_differ(tmp_path):
    pairs = _write_pairs(tmp_path, [(12, 12)] * 6)
    options = dict(num_classes=3, batch_size=2, crop_size=(7, 8), scale_range=(0.7, 1.4),
                   flip=True, shuffle=True, seed=11)
    first, second = make_pydataset(pairs, **options), make_pydataset(pairs, **options)
    reversed_order = [second[i] for i in reversed(range(len(second)))][::-1]
    _assert_same_batches(reversed_order, _batches(first))  # no dependence on the read order
    epoch_0 = _batches(first)
    first.on_epoch_end()
    second.on_epoch_end()
    epoch_1 = _batches(first)
    _assert_same_batches(_batches(second), epoch_1)
    assert first.epoch == 1
    assert not np.array_equal(first.epoch_order(0), first.epoch_order(1))
    assert sorted(first.epoch_order(1)) == list(range(6))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch_0, epoch_1))
    other_seed = make_pydataset(pairs, **dict(options, seed=12))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch_0, _batches(other_seed)))
    unshuffled = make_pydataset(pairs, num_classes=3, batch_size=4)
    assert unshuffled.num_batches == len(unshuffled) == 2
    assert make_pydataset(pairs, num_classes=3, batch_size=4, drop_remainder=True).num_batches == 1


def test_bad_mask_value_names_the_file_and_value(tmp_path):
    pairs = _write_pairs(tmp_path, [(6, 6)])
    mask = np.zeros((6, 6), np.uint8)
    mask[2, 3] = 37
    _write_mask(pairs[0][1], mask, "index")
    ds = make_pydataset(pairs, num_classes=21)
    message = (r"mask '.*mask_0\.png' has value 37 at \(2, 3\); expected 0\.\.20 "
               r"\(num_classes=21\) or ignore")
    with pytest.raises(ValueError, match=message):
        ds[0]
    assert make_pydataset(pairs, num_classes=21, ignore_label=37)[0][1][0, 2, 3] == 37


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    pairs = _write_pairs(tmp_path, [(6, 7)])
    _write_mask(pairs[0][1], np.zeros((6, 8), np.uint8), "index")
    with pytest.raises(ValueError, match=r"image '.*image_0\.png' is 6x7 \(HxW\) but mask "
                                         r"'.*mask_0\.png' is 6x8"):
        make_pydataset(pairs, num_classes=3)[0]


def test_missing_and_damaged_files(tmp_path):
    pairs = _write_pairs(tmp_path, [(6, 6)])
    with pytest.raises(ValueError, match=r"mask file '.*nothing\.png' does not exist"):
        make_pydataset([(pairs[0][0], str(tmp_path / "nothing.png"))], num_classes=3)
    with pytest.raises(ValueError, match=r"image file '.*nothing\.png' does not exist"):
        make_pydataset([(str(tmp_path / "nothing.png"), pairs[0][1])], num_classes=3)
    with open(pairs[0][0], "wb") as file:
        file.write(b"not an image")
    with pytest.raises(ValueError, match=r"image file '.*image_0\.png' is unreadable"):
        make_pydataset(pairs, num_classes=3)[0]


def test_mixed_sizes_need_a_crop_or_a_size(tmp_path):
    pairs = _write_pairs(tmp_path, [(6, 6), (6, 7)])
    ds = make_pydataset(pairs, num_classes=3, batch_size=2)
    with pytest.raises(ValueError, match=r"image_1\.png' is 6x7.*set `crop_size` or "
                                         r"`image_size`, or batch_size=1"):
        ds[0]
    assert make_pydataset(pairs, num_classes=3, batch_size=2, image_size=5)[0][0].shape == (
        2, 5, 5, 3)
    assert make_pydataset(pairs, num_classes=3, batch_size=2, crop_size=6)[0][0].shape == (
        2, 6, 6, 3)
    with pytest.raises(ValueError, match=r"with `scale_range` and batch_size > 1, set "
                                         r"`crop_size`"):
        make_pydataset(pairs, num_classes=3, batch_size=2, scale_range=(0.5, 2.0))


@pytest.mark.parametrize("name, value, pattern", [
    ("num_classes", 0, r"`num_classes` must be a positive integer. Received: num_classes=0"),
    ("batch_size", 2.0, r"Received: batch_size=2.0"),
    ("crop_size", (10, 0), r"`crop_size` must be .* Received: crop_size=\(10, 0\)"),
    ("image_size", "64", r"Received: image_size='64'"),
    ("scale_range", (2.0, 0.5), r"0 < low <= high. Received: scale_range=\(2.0, 0.5\)"),
    ("flip", 0.5, r"`flip` must be True or False. Received: flip=0.5"),
    ("shuffle", "yes", r"Received: shuffle='yes'"),
    ("seed", 1.5, r"`seed` must be an int or None. Received: seed=1.5"),
    ("ignore_label", None, r"Received: ignore_label=None"),
    ("mask_format", "png", r"`mask_format` must be one of .* Received: mask_format='png'"),
    ("unknown_color", "skip", r"Received: unknown_color='skip'"),
    ("mean_rgb", (1, 2), r"Received: mean_rgb=\(1, 2\)"),
])
def test_argument_values_are_checked_up_front(tmp_path, name, value, pattern):
    pairs = _write_pairs(tmp_path, [(6, 6)])
    options = {"num_classes": 3, "crop_size": 4, name: value}
    with pytest.raises(ValueError, match=pattern):
        make_pydataset(pairs, **options)


def test_other_wrong_arguments(tmp_path):
    pairs = _write_pairs(tmp_path, [(6, 6)] * 2)
    with pytest.raises(ValueError, match=r"needs a `palette`. Received: palette=None"):
        make_pydataset(pairs, num_classes=3, mask_format="rgb")
    with pytest.raises(ValueError, match=r"Entry 0 is not an \(image, mask\) pair"):
        make_pydataset([pairs[0][0]], num_classes=3)
    with pytest.raises(ValueError, match=r"Entry 1 is not .* Received: pair=7"):
        make_pydataset([pairs[0], 7], num_classes=3)
    with pytest.raises(ValueError, match=r"Received: pairs=\[\]"):
        make_pydataset([], num_classes=3)
    with pytest.raises(ValueError, match=r"2 pairs are fewer than batch_size=3"):
        make_pydataset(pairs, num_classes=3, batch_size=3, drop_remainder=True)
    with pytest.raises(TypeError, match="worker"):
        make_pydataset(pairs, num_classes=3, worker=2)
    with pytest.raises(IndexError, match="Batch index 2 is out of range"):
        make_pydataset(pairs, num_classes=3)[2]


def _tiny_model():
    model = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Lambda(lambda x: x / 255.0),
                              keras.layers.Conv2D(3, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                  ignore_class=255))
    return model


def _fit(model, ds):
    """Fits two epochs; returns (last loss, whether every weight changed)."""
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(ds, epochs=2, verbose=0)
    changed = all(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    return float(history.history["loss"][-1]), changed


_FIT_OPTIONS = dict(num_classes=3, batch_size=2, crop_size=(10, 12), flip=True, shuffle=True,
                    seed=0, mean_rgb=MEAN_RGB)


def test_fits_a_keras_model_on_tensorflow_with_worker_threads(tmp_path):
    pairs = _write_pairs(tmp_path, [(9, 13)] * 3 + [(14, 11)])
    ds = SegmentationPyDataset(pairs, workers=2, **_FIT_OPTIONS)
    assert ds.workers == 2 and not ds.use_multiprocessing
    loss, changed = _fit(_tiny_model(), ds)
    assert np.isfinite(loss) and changed
    assert ds.epoch >= 2  # fit calls on_epoch_end after each epoch (Keras 3: and before them)


_NO_TF_SCRIPT = """
import json, sys
sys.modules["tensorflow"] = None  # `import tensorflow` now fails, as on a machine without it
import keras
import numpy as np
from keras_fcn.data.arrays import make_pydataset

ds = make_pydataset(json.loads(sys.argv[1]), **json.loads(sys.argv[2]))
# Lambda, not Rescaling: keras' preprocessing layers ask TensorFlow whether they run in a
# tf.data graph whenever "tensorflow" is in sys.modules, as the None above puts it.
model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Lambda(lambda x: x / 255.0),
                          keras.layers.Conv2D(3, 3, padding="same")])
model.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255))
before = [w.copy() for w in model.get_weights()]
history = model.fit(ds, epochs=2, verbose=0)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(), "epoch": ds.epoch,
    "loss": float(history.history["loss"][-1]),
    "changed": all(not np.allclose(a, b) for a, b in zip(before, model.get_weights())),
    "tensorflow": sorted(m for m, v in sys.modules.items()
                         if m.split(".")[0] == "tensorflow" and v is not None),
    "keras_fcn": sorted(m for m in sys.modules if m.startswith("keras_fcn")),
}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_fits_a_keras_model_without_tensorflow(tmp_path, backend):
    pytest.importorskip(backend)
    pairs = _write_pairs(tmp_path, [(9, 13)] * 3 + [(14, 11)])
    env = dict(os.environ, KERAS_BACKEND=backend,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _NO_TF_SCRIPT, json.dumps(pairs),
                           json.dumps(dict(_FIT_OPTIONS, mean_rgb=list(MEAN_RGB)))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["backend"] == backend and result["tensorflow"] == []
    assert "keras_fcn.data.arrays" in result["keras_fcn"]
    assert np.isfinite(result["loss"]) and result["changed"] and result["epoch"] >= 2


def test_recipe_inputs_without_tf_data(tmp_path):
    """keras_fcn.training.array_inputs: the recipe's data as PyDatasets; tf.data-only options
    are refused by name; the final evaluation reads masks at full size."""
    from keras_fcn.datasets.shapes import make_shapes_dataset
    from keras_fcn.training import TrainConfig, array_inputs

    make_shapes_dataset(str(tmp_path / "shapes"), num_train=4, num_val=3, size=24, seed=0)
    config = TrainConfig(dataset="shapes", data_dir=str(tmp_path / "shapes"),
                         image_size=(12, 16), batch_size=2, class_weights="median")
    train, val, final, info, counts, weights, pixels = array_inputs.load_pipelines(
        config, str(tmp_path))
    assert counts == (4, 3) and pixels == 12 * 16 and len(weights) == info.num_classes
    images, masks = train[0]
    assert images.shape == (2, 12, 16, 3) and masks.shape == (2, 12, 16)
    batches = list(final)
    assert len(batches) == 3
    assert batches[0][0].shape == (1, 12, 16, 3) and batches[0][1].shape == (1, 24, 24)
    with pytest.raises(ValueError, match="--temporal_consistency needs the tf.data pipeline"):
        array_inputs.load_pipelines(TrainConfig(dataset="shapes", temporal_consistency=0.5))
    jittered = array_inputs.load_pipelines(config.replace(photometric=0.5), str(tmp_path))[0]
    assert jittered.photometric == 0.5
    np.testing.assert_array_equal(jittered[0][1], masks)  # the same masks, other colours
    assert np.abs(jittered[0][0] - images).max() > 1


# Audit round 5 leftovers: an 8-bit grey PNG mask is opened once, not a second time for its header.


def test_pydataset_reads_each_grey_mask_file_once(tmp_path, opens):
    image, mask = str(tmp_path / "a.png"), str(tmp_path / "a_mask.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(image)
    Image.fromarray(np.array([[0, 1, 2, 1, 0]] * 4, np.uint8), "L").save(mask)
    dataset = data.make_pydataset([(image, mask)], num_classes=3)
    opens.clear()
    _, masks = dataset[0]
    assert masks[0, 0].tolist() == [0, 1, 2, 1, 0]
    assert [call for call in opens if call == ("open", mask)] == [("open", mask)]


# --- keras_fcn.data.augment and keras_fcn.data.warp against closed forms (mutation audit) ---


def test_make_dataset_flip_of_a_padding_crop_is_the_mirror_of_the_unflipped_crop(tmp_path):
    """tf.data pipeline: a crop larger than the image pads it (no random offset is left); a
    flipped element must be the exact mirror of the unflipped one, its padding on the left
    (pad, crop, then flip), image and mask alike."""
    pairs = _write_pairs(tmp_path, [(6, 9)] * 6)
    plain = _batches(make_dataset(pairs, num_classes=3, crop_size=(8, 11)))
    flips = []
    for seed in (4, 5):
        flipping = _batches(make_dataset(pairs, num_classes=3, crop_size=(8, 11), flip=True,
                                         seed=seed))
        for _, ref_mask in plain:
            assert (ref_mask[0, :, 9:] == 255).all() and (ref_mask[0, 6:] == 255).all()
        flips += _flips(flipping, plain)
    assert 0 < sum(flips) < len(flips)


def test_affine_zoom_and_rotation_keep_the_centre_of_a_non_square_image():
    """affine_matrices turn and zoom about the image centre ((W - 1) / 2, (H - 1) / 2), then
    shift: the centre goes to centre + shift, and the linear part is scale * rotation."""
    from keras_fcn.data.warp import affine_matrices

    height, width = 10, 31
    shift = np.array([[0.0, 0.0], [1.5, -2.0]], np.float32)
    log_scale, angle = np.log([1.2, 0.9]).astype(np.float32), np.array([0.3, -0.7], np.float32)
    matrices = affine_matrices(shift, log_scale, angle, height, width).numpy()
    centre = np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
    for m, s, z, a in zip(matrices, shift, np.exp(log_scale), angle):
        np.testing.assert_allclose(m @ centre, centre[:2] + s, atol=1e-4)
        np.testing.assert_allclose(m[:, :2], z * np.array([[np.cos(a), -np.sin(a)],
                                                            [np.sin(a), np.cos(a)]]), atol=1e-6)


def test_compose_is_warping_by_the_first_then_by_the_second():
    """compose(first, second) equals the two warps one after the other, for a pair that does
    not commute (a shift and a quarter turn): exact with nearest sampling on integer moves."""
    from keras_fcn.data.warp import affine_flow, affine_matrices, compose, warp_images

    size = 16
    image = np.arange(size * size, dtype=np.float32).reshape(1, size, size, 1)
    first = affine_matrices([[3.0, 0.0]], [0.0], [0.0], size, size)
    second = affine_matrices([[0.0, 0.0]], [0.0], [np.pi / 2], size, size)
    assert not np.allclose(compose(first, second), compose(second, first), atol=1e-3)

    def warp(images, matrices):
        flow, valid = affine_flow(matrices, size, size)
        return warp_images(images, flow, method="nearest").numpy(), valid.numpy()

    once, _ = warp(image, first)
    twice, valid_second = warp(once, second)
    both, valid_both = warp(image, compose(first, second))
    keep = valid_both & valid_second
    assert keep.sum() > size * size // 2
    np.testing.assert_array_equal(twice[keep], both[keep])


@pytest.mark.parametrize("ignore_label", [-1, 300])
def test_a_padding_crop_of_uint8_masks_pads_with_a_void_label_that_does_not_fit_uint8(
        ignore_label):
    """prepare_dataset (in-memory or TFDS data, uint8 masks as its docstring advises) padded
    a crop larger than the image by casting the void label to the mask's uint8: -1 became
    255 and 300 became 44, a class id, learnt without a word. The padding holds the void
    label itself, and the labels are kept."""
    images = np.zeros((2, 6, 9, 3), np.uint8)
    masks = np.random.default_rng(0).integers(0, 50, (2, 6, 9)).astype(np.uint8)
    decoded = tf.data.Dataset.from_tensor_slices((images, masks))
    for flip in (False, True):
        ds = data.prepare_dataset(decoded, ignore_label=ignore_label, crop_size=(8, 11),
                                  batch_size=2, flip=flip, seed=1)
        (_, got), = _batches(ds)
        assert got.dtype == np.int32 and got.shape == (2, 8, 11)
        void = got == ignore_label
        assert void.sum(axis=(1, 2)).tolist() == [8 * 11 - 6 * 9] * 2
        np.testing.assert_array_equal(np.sort(got[~void].reshape(2, -1)),
                                      np.sort(masks.reshape(2, -1)))


def test_a_padding_crop_without_a_void_label_is_refused_by_name():
    from keras_fcn.data import make_element_fn

    with pytest.raises(ValueError, match=r"`crop_size` pads masks smaller than the crop with "
                                         r"`ignore_label`, which cannot then be None.*"
                                         r"Received: ignore_label=None, crop_size=\(8, 11\)"):
        make_element_fn(ignore_label=None, crop_size=(8, 11), scale_range=None, flip=True)


def test_element_fn_and_random_flip_take_the_scalar_element_seed_of_their_docstrings():
    """The docstring examples: an int64 scalar element seed, as `with_element_seeds` gives."""
    from keras_fcn.data import make_element_fn, random_flip

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    mask = np.arange(6, dtype=np.uint8).reshape(2, 3)
    fn = make_element_fn(ignore_label=255, crop_size=(4, 5), scale_range=None, flip=False)
    got_image, got_mask = fn((image, mask), tf.constant(7, tf.int64))
    np.testing.assert_array_equal(got_mask.numpy()[:2, :3], mask)
    assert (got_mask.numpy()[2:] == 255).all() and (got_mask.numpy()[:, 3:] == 255).all()
    np.testing.assert_array_equal(got_image.numpy()[:2, :3], image)
    flipped_image, flipped_mask = random_flip(tf.constant(7, tf.int64), image, mask)
    if not np.array_equal(flipped_mask, mask):
        np.testing.assert_array_equal(flipped_mask, mask[:, ::-1])
        np.testing.assert_array_equal(flipped_image, image[:, ::-1])


# Eleventh session: the PyDatasets blur as make_dataset does (the CamVid recipe's default
# --blur stopped the recipe without TensorFlow).


@pytest.mark.parametrize("size, sigma, radius", [((9, 12), 0.7, 5), ((3, 4), 1.5, 5),
                                                  ((16, 5), 0.1, 1)])
def test_numpy_blur_is_the_tf_blur(size, sigma, radius):
    """The same kernel and mirrored edges, also where the radius exceeds the image."""
    from keras_fcn.data import arrays
    from keras_fcn.data.augment import gaussian_blur

    image = np.random.default_rng(3).uniform(0, 255, (*size, 3)).astype(np.float32)
    expected = gaussian_blur(tf.constant(image), sigma, radius).numpy()
    np.testing.assert_allclose(arrays.gaussian_blur(image, sigma, radius), expected,
                               rtol=0, atol=2e-4)


def test_pydataset_blurs_half_the_images_with_a_drawn_std(tmp_path):
    from keras_fcn.data import arrays

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "i.png")
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(tmp_path / "m.png")
    pairs = [(str(tmp_path / "i.png"), str(tmp_path / "m.png"))] * 12
    ds = arrays.make_pydataset(pairs, num_classes=2, blur=1.5, seed=4)
    applied = 0
    for i in range(len(pairs)):
        draws = np.random.default_rng([ds.seed, 0, arrays._ELEMENT_STREAM, i])
        blurred = draws.random() < 0.5
        expected = (arrays.gaussian_blur(image, draws.uniform(0.1, 1.5), 5) if blurred
                    else image.astype(np.float32))
        np.testing.assert_allclose(ds.element(i)[0], expected, rtol=0, atol=1e-4)
        applied += blurred
    assert 0 < applied < len(pairs)
    with pytest.raises(ValueError, match=r"`blur` must be >= 0.1 \(0: off\). Received: "
                                         r"blur=0.05"):
        arrays.make_pydataset(pairs, num_classes=2, blur=0.05)


def test_a_missing_pair_file_is_a_file_not_found_error(tmp_path):
    """It was a ValueError alone; it still is one (callers that catch it keep working)."""
    from keras_fcn.data import arrays

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(FileNotFoundError, match=r"image file '.*gone\.png' does not exist") as e:
        arrays.make_pydataset([(tmp_path / "gone.png", tmp_path / "m.png")], num_classes=2)
    assert isinstance(e.value, ValueError)
