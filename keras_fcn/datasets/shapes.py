"""A small procedural segmentation data set ("shapes") for examples, tests and smoke runs.

Images show coloured circles (class 1), rectangles (class 2) and triangles (class 3) on a noisy,
textured background (class 0). As in PASCAL VOC, a thin band along every shape border is void
(255). Everything is generated from a seed, so the same seed gives the same pixels.

Use it on disk (PNG pairs and list files, read by the same readers as real data):

```python
from keras_fcn import data
from keras_fcn.datasets import shapes as synthetic

info = synthetic.make_shapes_dataset("/tmp/shapes", num_train=200, num_val=50, size=64)
pairs, info = synthetic.shapes_pairs("/tmp/shapes", "train")
ds = data.make_dataset(pairs, **info.dataset_kwargs(), batch_size=8, crop_size=64)
```

or in memory: `synthetic.shapes_tf_dataset(200, size=64, seed=0, batch_size=8)`.
"""

import os

import numpy as np

from keras_fcn._checks import check_choice
from keras_fcn.datasets.base import DatasetInfo
from keras_fcn.datasets.common import write_list_file
from keras_fcn.datasets.folder import list_file_pairs
from keras_fcn.labels import IGNORE_LABEL

SHAPES_CLASSES = ("background", "circle", "rectangle", "triangle")
SHAPES_PALETTE = ((0, 0, 0), (220, 20, 60), (34, 139, 34), (30, 144, 255))
SHAPES_INFO = DatasetInfo("shapes", 4, SHAPES_CLASSES, SHAPES_PALETTE, IGNORE_LABEL)

# Each class has its own hue (with jitter) so a small network learns it in a short run.
_BASE_COLOURS = {1: (210, 60, 50), 2: (60, 190, 70), 3: (60, 90, 220)}
_COLOUR_JITTER = 35
VAL_OFFSET = 1_000_000  # val images use other seeds than train images
SPLITS = ("train", "val")


def _background(rng, size):
    """Low-saturation colour with a gradient, a stripe texture and pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(60, 170) + rng.uniform(-15, 15, size=3)
    gradient = rng.uniform(-40, 40) * xx + rng.uniform(-40, 40) * yy
    period = rng.uniform(4, 12)
    angle = rng.uniform(0, np.pi)
    stripes = 12 * np.sin(2 * np.pi * size * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    image = base[None, None, :] + (gradient + stripes)[..., None]
    return image + rng.normal(0, 8, size=(size, size, 3))


def _circle(rng, yy, xx, size):
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    radius = rng.uniform(0.1, 0.25) * size
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def _rectangle(rng, yy, xx, size):
    h, w = rng.uniform(0.2, 0.5, 2) * size
    top, left = rng.uniform(0, size - h), rng.uniform(0, size - w)
    return (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)


def _triangle(rng, yy, xx, size):
    center = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.15, 0.3) * size
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
    ys, xs = center[0] + radius * np.sin(angles), center[1] + radius * np.cos(angles)
    inside = np.ones_like(yy, dtype=bool)
    for i in range(3):  # same side of each edge as the opposite vertex
        j, k = (i + 1) % 3, (i + 2) % 3
        edge = (xs[j] - xs[i]) * (yy - ys[i]) - (ys[j] - ys[i]) * (xx - xs[i])
        ref = (xs[j] - xs[i]) * (ys[k] - ys[i]) - (ys[j] - ys[i]) * (xs[k] - xs[i])
        inside &= edge * ref >= 0
    return inside


_SHAPES = {1: _circle, 2: _rectangle, 3: _triangle}


def _border(mask):
    """Pixels with a 4-neighbour of another label (a 2-pixel band across each border)."""
    border = np.zeros(mask.shape, bool)
    border[1:] |= mask[1:] != mask[:-1]
    border[:-1] |= mask[1:] != mask[:-1]
    border[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    border[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    return border


def shapes_example(index, size=64, seed=0, ignore_label=IGNORE_LABEL):
    """Generates one image and mask.

    Args:
        index: example number (each index has its own random stream).
        size: image side in pixels.
        seed: data set seed.
        ignore_label: label of the void band along shape borders.

    Returns:
        (image uint8 (size, size, 3), mask uint8 (size, size)).

    Example:
        >>> image, mask = shapes_example(0)
        >>> image.shape, int(mask.max())
        ((64, 64, 3), 255)
    """
    rng = np.random.default_rng([seed, index])
    image = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for _ in range(rng.integers(1, 4)):
        label = int(rng.integers(1, 4))
        inside = _SHAPES[label](rng, yy, xx, size)
        colour = np.array(_BASE_COLOURS[label]) + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3)
        image[inside] = colour + rng.normal(0, 6, size=(int(inside.sum()), 3))
        mask[inside] = label
    mask[_border(mask)] = ignore_label
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def shapes_arrays(num_examples, size=64, seed=0, start=0):
    """Generates `num_examples` examples as stacked arrays.

    Returns:
        (images uint8 (N, size, size, 3), masks uint8 (N, size, size)).

    Example:
        >>> images, masks = shapes_arrays(4, size=32)
        >>> images.shape, masks.shape
        ((4, 32, 32, 3), (4, 32, 32))
    """
    examples = [shapes_example(start + i, size, seed) for i in range(num_examples)]
    return np.stack([e[0] for e in examples]), np.stack([e[1] for e in examples])


def _write_split(directory, split, count, start, size, seed):
    """Writes one split's PNG pairs and its list file."""
    from PIL import Image

    for sub in ("images", "masks"):
        os.makedirs(os.path.join(directory, split, sub), exist_ok=True)
    lines = []
    for i in range(count):
        image, mask = shapes_example(start + i, size, seed)
        name = f"{split}_{i:05d}.png"
        rel_image, rel_mask = f"{split}/images/{name}", f"{split}/masks/{name}"
        Image.fromarray(image).save(os.path.join(directory, rel_image), compress_level=1)
        Image.fromarray(mask).save(os.path.join(directory, rel_mask), compress_level=1)
        lines.append(f"{rel_image} {rel_mask}")
    write_list_file(os.path.join(directory, f"{split}.txt"), lines)


def make_shapes_dataset(directory, num_train=200, num_val=50, size=64, seed=0):
    """Writes the shapes data set as PNG pairs with `train.txt` / `val.txt` list files.

    Layout: `{split}/images/*.png` (RGB), `{split}/masks/*.png` (single-channel ids, void 255)
    and `{split}.txt` of "image mask" lines, as CamVid; read it with `shapes_pairs`.

    Args:
        directory: output folder (created).
        num_train: number of training images.
        num_val: number of validation images (generated from other seeds than train).
        size: image side in pixels.
        seed: data set seed.

    Returns:
        `SHAPES_INFO` (4 classes, ignore 255).

    Example:
        >>> info = make_shapes_dataset("/tmp/shapes", num_train=20, num_val=5)
        >>> len(shapes_pairs("/tmp/shapes", "val")[0])
        5
    """
    directory = os.path.expanduser(os.fspath(directory))
    _write_split(directory, "train", num_train, 0, size, seed)
    _write_split(directory, "val", num_val, VAL_OFFSET, size, seed)
    return SHAPES_INFO


def shapes_pairs(directory, split="train"):
    """Reads a split written by `make_shapes_dataset`: (pairs, `SHAPES_INFO`).

    Example:
        >>> pairs, info = shapes_pairs("/tmp/shapes", "val")
    """
    check_choice("split", split, SPLITS)
    return list_file_pairs(directory, f"{split}.txt"), SHAPES_INFO


def shapes_tf_dataset(num_examples, *, size=64, seed=0, split="train", **prepare_kwargs):
    """The shapes data set in memory as a `tf.data.Dataset` of (image, mask) batches.

    Args:
        num_examples: number of examples.
        size: image side. seed: data set seed (also the default pipeline seed).
        split: "train" or "val" (val uses the same example seeds as `make_shapes_dataset`).
        **prepare_kwargs: passed to `keras_fcn.data.prepare_dataset` (batch_size, crop_size,
            flip, shuffle, ...).

    Returns:
        `tf.data.Dataset` of (image float32 (B, size, size, 3), mask int32 (B, size, size)).

    Example:
        >>> ds = shapes_tf_dataset(100, batch_size=8, shuffle=True, flip=True)
    """
    check_choice("split", split, SPLITS)
    start = 0 if split == "train" else VAL_OFFSET
    images, masks = shapes_arrays(num_examples, size, seed, start)
    prepare_kwargs.setdefault("seed", seed)
    prepare_kwargs.setdefault("ignore_label", SHAPES_INFO.ignore_label)
    import tensorflow as tf

    from keras_fcn.data.pipeline import prepare_dataset

    decoded = tf.data.Dataset.from_tensor_slices((images, masks))
    return prepare_dataset(decoded, **prepare_kwargs)
