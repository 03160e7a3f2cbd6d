"""NYUDv2 (NYU Depth v2) for the FCN paper's RGB / HHA / RGB-D / late-fusion experiments.

Task: the 40-class labelling of Gupta et al. (CVPR 2013 / ECCV 2014) on the 1,449 labelled
images, split 795 trainval (381 train + 414 val) / 654 test as in the FCN code
(``fcn.berkeleyvision.org/data/nyud/{train,val,test}.txt``, shipped here in
``keras_fcn/resources/nyud_*.txt``). Image ids are ``5001 .. 6449``: id = 5000 + the 1-based
index of the image in ``nyu_depth_v2_labeled.mat`` (Gupta et al.'s numbering).

Labels: the data set stores 0 = void (unlabelled) and 1..40 = classes; readers here return
**training ids**: classes 0..39 (``NYUD_CLASSES`` order) and void = 255 (ignored by the loss
and the metrics), exactly as the reference ``NYUDSegDataLayer`` (``label - 1`` in uint8).

Two sources are supported:

1. The FCN layout (``nyud.tar.gz`` of the FCN authors, or written by
   :func:`convert_labeled_mat`)::

       root/data/images/img_5001.png    RGB
       root/data/depth/img_5001.png     depth, uint16 millimetres
       root/data/hha/img_5001.png       HHA, uint8 3 channels
       root/segmentation/img_5001.mat   field "segmentation": uint8 40-class labels, 0 = void
       root/{train,val,test}.txt        optional split files (else the bundled lists)

2. The official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py) plus
   Gupta et al.'s ``classMapping40.mat`` (field ``mapClass``: (1, 894), the 40-class id of
   each of the 894 NYU labels): :func:`iter_labeled_mat` and :func:`convert_labeled_mat`.
   h5py sees MATLAB's column-major (H, W, 3, N) arrays reversed, as ``images`` (N, 3, W, H),
   ``depths``/``labels`` (N, W, H); the reader transposes them to (H, W, 3) / (H, W).

Example:

```python
from keras_fcn.datasets import nyud
nyud.convert_labeled_mat("nyu_depth_v2_labeled.mat", "classMapping40.mat", "data/nyud")
ds = nyud.make_nyud_dataset("data/nyud", "trainval", modality="fusion", shuffle=True, seed=0)
```
"""

import functools
import logging
import os

import numpy as np

from keras_fcn.datasets import hha as hha_lib
from keras_fcn._checks import check_choice

log = logging.getLogger("keras_fcn")

NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
NUM_CLASSES = 40
IGNORE_LABEL = 255
ID_OFFSET = 5000
NUM_RAW_CLASSES = 894

# Means of the reference NYUDSegDataLayer: BGR colour, HHA, and log(depth in mm).
NYUD_MEAN_BGR = (116.190, 97.203, 92.318)
NYUD_MEAN_HHA = (132.431, 94.076, 118.477)
NYUD_MEAN_LOG_DEPTH = 7.844

SPLITS = ("train", "val", "trainval", "test")
MODALITIES = ("rgb", "hha", "rgbd", "fusion")

_RESOURCES = os.path.join(os.path.dirname(__file__), "resources")


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def read_split_file(path):
    """Reads ids from a split file, one per line (blank lines skipped).

    Example:
        >>> read_split_file("data/nyud/test.txt")[:2]  # doctest: +SKIP
        ['5133', '6002']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Split file not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def nyud_split_ids(split="train"):
    """The FCN paper's NYUDv2 split ids (bundled): 381 train, 414 val, 795 trainval, 654 test.

    Args:
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"test"``.

    Returns:
        List of id strings (``"5001"`` .. ``"6449"``).

    Example:
        >>> len(nyud_split_ids("trainval")), len(nyud_split_ids("test"))
        (795, 654)
    """
    check_choice("split", split, SPLITS)
    if split == "trainval":
        return nyud_split_ids("train") + nyud_split_ids("val")
    return read_split_file(os.path.join(_RESOURCES, f"nyud_{split}.txt"))


def nyud_ids(root, split="train"):
    """Split ids of a data folder: ``root/{split}.txt`` when present, else the bundled lists.

    Example:
        >>> ids = nyud_ids("data/nyud", "test")  # doctest: +SKIP
    """
    check_choice("split", split, SPLITS)
    path = os.path.join(os.fspath(root), f"{split}.txt")
    if os.path.isfile(path):
        return read_split_file(path)
    if split == "trainval" and all(
        os.path.isfile(os.path.join(os.fspath(root), f"{s}.txt")) for s in ("train", "val")
    ):
        return nyud_ids(root, "train") + nyud_ids(root, "val")
    return nyud_split_ids(split)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def to_train_ids(labels40):
    """Maps NYU 40-class labels (0 = void, 1..40) to training ids (0..39, void = 255).

    Args:
        labels40: integer array of 40-class labels.

    Returns:
        uint8 array of the same shape.

    Example:
        >>> to_train_ids(np.array([0, 1, 40])).tolist()
        [255, 0, 39]
    """
    return void_zero_to_train_ids(labels40, NUM_CLASSES, "NYU 40-class labels")


def void_zero_to_train_ids(labels, num_classes, what):
    """Labels 1..num_classes with 0 = void -> training ids 0..num_classes-1, void 255 (uint8).

    Raises:
        ValueError: a value outside 0..num_classes, naming ``what`` and the range found.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(
            f"{what} must be in 0..{num_classes} (0 = void). Received values in "
            f"{labels.min()}..{labels.max()}"
        )
    return np.where(labels == 0, IGNORE_LABEL, labels - 1).astype(np.uint8)


def read_class_mapping(path):
    """Reads Gupta et al.'s ``classMapping40.mat`` into a lookup table for the 894 NYU labels.

    Args:
        path: the ``.mat`` file (MATLAB v5, read with scipy) with ``mapClass`` of 894 entries:
            ``mapClass[i - 1]`` is the 40-class id (1..40) of NYU label ``i``.

    Returns:
        uint8 array (895,): ``table[raw_label]`` is the 40-class label, ``table[0] = 0`` (void).

    Example:
        >>> table = read_class_mapping("classMapping40.mat")  # doctest: +SKIP
        >>> labels40 = table[raw_labels]  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Class mapping file not found: {path!r}")
    contents = load_mat(path)
    if "mapClass" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path!r} has no 'mapClass' field (it has {keys}).")
    mapping = np.asarray(contents["mapClass"]).reshape(-1)
    if mapping.size != NUM_RAW_CLASSES or mapping.min() < 0 or mapping.max() > NUM_CLASSES:
        raise ValueError(
            f"'mapClass' in {path!r} must hold {NUM_RAW_CLASSES} values in 0..{NUM_CLASSES}. "
            f"Received: {mapping.size} values in {mapping.min()}..{mapping.max()}"
        )
    return np.concatenate([[0], mapping]).astype(np.uint8)


def map_to_40_classes(raw_labels, table):
    """Maps raw NYU labels (0 = unlabelled, 1..894) to 40-class labels with a lookup table.

    Example:
        >>> map_to_40_classes(np.array([0, 1]), np.array([0, 12] + [1] * 893)).tolist()
        [0, 12]
    """
    raw_labels = np.asarray(raw_labels)
    if raw_labels.size and (raw_labels.min() < 0 or raw_labels.max() >= len(table)):
        raise ValueError(
            f"Raw NYU labels must be in 0..{len(table) - 1}. Received values in "
            f"{raw_labels.min()}..{raw_labels.max()}"
        )
    return np.asarray(table)[raw_labels]


# ---------------------------------------------------------------------------------------------
# nyu_depth_v2_labeled.mat
# ---------------------------------------------------------------------------------------------


def _check_labeled_layout(f, path):
    for key in ("images", "depths", "labels"):
        if key not in f:
            raise ValueError(f"{path!r} has no {key!r} dataset (keys: {sorted(f.keys())}).")
    images, depths, labels = f["images"], f["depths"], f["labels"]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"'images' in {path!r} must be (N, 3, W, H) as h5py reads MATLAB's (H, W, 3, N). "
            f"Received: shape={images.shape}"
        )
    expected = (images.shape[0], images.shape[2], images.shape[3])
    for name, data in (("depths", depths), ("labels", labels)):
        if data.shape != expected:
            raise ValueError(
                f"{name!r} in {path!r} must be (N, W, H) = {expected} like 'images'. "
                f"Received: shape={data.shape}"
            )
    return images.shape[0]


def iter_labeled_mat(path, indices=None, class_mapping=None):
    """Yields the images of ``nyu_depth_v2_labeled.mat`` one at a time (read lazily).

    Args:
        path: the MATLAB v7.3 (HDF5) file.
        indices: 0-based image indices to read (default: all 1,449).
        class_mapping: path of ``classMapping40.mat`` or a table from
            :func:`read_class_mapping`; when given, ``"label"`` holds 40-class labels
            (0 = void, 1..40), otherwise the raw 894-class labels.

    Yields:
        dicts with ``"id"`` (str, ``5000 + index + 1``), ``"rgb"`` uint8 (H, W, 3),
        ``"depth"`` float32 (H, W) metres and ``"label"`` (H, W): uint8 40-class labels or
        uint16 raw labels.

    Example:
        >>> for example in iter_labeled_mat("nyu_depth_v2_labeled.mat", [0]):  # doctest: +SKIP
        ...     print(example["id"], example["rgb"].shape)
        5001 (480, 640, 3)
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYUDv2 labelled file not found: {path!r}")
    table = class_mapping
    if class_mapping is not None and not isinstance(class_mapping, np.ndarray):
        table = read_class_mapping(class_mapping)
    with h5py.File(path, "r") as f:
        count = _check_labeled_layout(f, path)
        for index in range(count) if indices is None else indices:
            if not 0 <= int(index) < count:
                raise IndexError(f"Image index {index} out of range 0..{count - 1} in {path!r}")
            raw = np.asarray(f["labels"][index]).T
            yield {
                "id": str(ID_OFFSET + int(index) + 1),
                "rgb": np.ascontiguousarray(np.asarray(f["images"][index]).transpose(2, 1, 0)),
                "depth": np.asarray(f["depths"][index], dtype=np.float32).T.copy(),
                "label": raw.astype(np.uint16) if table is None else map_to_40_classes(raw, table),
            }


def _write_png(path, array):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def write_example(root, image_id, rgb, depth, labels40, hha=None):
    """Writes one image in the FCN layout (see the module docstring).

    Args:
        root: output folder. image_id: id string such as ``"5001"``.
        rgb: uint8 (H, W, 3). depth: float (H, W) metres (stored as uint16 millimetres).
        labels40: (H, W) 40-class labels, 0 = void. hha: optional uint8 (H, W, 3).

    Example:
        >>> write_example("out", "5001", rgb, depth, labels40, compute_hha(depth))  # doctest: +SKIP
    """
    import scipy.io

    root = os.fspath(root)
    name = f"img_{image_id}"
    _write_png(os.path.join(root, "data", "images", f"{name}.png"), np.asarray(rgb, np.uint8))
    depth_mm = np.clip(np.rint(np.nan_to_num(np.asarray(depth)) * 1000.0), 0, 65535)
    _write_png(os.path.join(root, "data", "depth", f"{name}.png"), depth_mm.astype(np.uint16))
    if hha is not None:
        _write_png(os.path.join(root, "data", "hha", f"{name}.png"), np.asarray(hha, np.uint8))
    os.makedirs(os.path.join(root, "segmentation"), exist_ok=True)
    scipy.io.savemat(os.path.join(root, "segmentation", f"{name}.mat"),
                     {"segmentation": np.asarray(labels40, np.uint8)}, do_compression=True)


def write_split_files(root, splits=None):
    """Writes ``root/{train,val,test}.txt`` (the bundled split by default).

    Example:
        >>> write_split_files("data/nyud")  # doctest: +SKIP
    """
    splits = splits or {s: nyud_split_ids(s) for s in ("train", "val", "test")}
    os.makedirs(os.fspath(root), exist_ok=True)
    for split, ids in splits.items():
        with open(os.path.join(os.fspath(root), f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{i}\n" for i in ids))


def convert_labeled_mat(mat_path, class_mapping_path, out_dir, with_hha=True,
                        intrinsics=hha_lib.NYU_INTRINSICS, indices=None, verbose=True):
    """Converts ``nyu_depth_v2_labeled.mat`` into the FCN layout, with HHA computed here.

    The HHA images are this package's approximation of Gupta et al.'s encoding
    (:func:`keras_fcn.hha.compute_hha`); the FCN authors' ``nyud.tar.gz`` holds the original
    ones (and Gupta et al.'s images, cropped to their valid region).

    Args:
        mat_path: ``nyu_depth_v2_labeled.mat``. class_mapping_path: ``classMapping40.mat``.
        out_dir: output folder. with_hha: also write ``data/hha``.
        intrinsics: camera ``(fx, fy, cx, cy)`` for HHA. indices: 0-based subset (default all).
        verbose: log progress every 100 images.

    Returns:
        The number of images written.

    Example:
        >>> convert_labeled_mat("nyu_depth_v2_labeled.mat", "classMapping40.mat",
        ...                     "data/nyud")  # doctest: +SKIP
        1449
    """
    count = 0
    for example in iter_labeled_mat(mat_path, indices, class_mapping_path):
        hha = hha_lib.compute_hha(example["depth"], intrinsics) if with_hha else None
        write_example(out_dir, example["id"], example["rgb"], example["depth"],
                      example["label"], hha)
        count += 1
        if verbose and count % 100 == 0:
            log.info("NYUDv2: converted %d images", count)
    write_split_files(out_dir)
    return count


# ---------------------------------------------------------------------------------------------
# FCN layout readers and preprocessing
# ---------------------------------------------------------------------------------------------


def _image_path(root, kind, image_id):
    return os.path.join(os.fspath(root), "data", kind, f"img_{image_id}.png")


def read_image_file(path, mode=None):
    """Reads an image file as an array (converted to PIL ``mode`` if given); a damaged file
    raises ValueError naming it."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYUDv2 file not found: {path!r}")
    try:
        with Image.open(path) as image:
            return np.asarray(image if mode is None else image.convert(mode))
    # PIL raises OSError subclasses for truncated or unknown files, DecompressionBombError
    # (not an OSError) for absurd declared sizes.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"Cannot read image {path!r}: {error}") from error


def load_mat(path):
    """``scipy.io.loadmat(path)``; a missing file raises FileNotFoundError and a damaged one
    ValueError, both naming the file."""
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MATLAB file not found: {path!r}")
    try:
        return scipy.io.loadmat(path)
    except Exception as error:  # scipy raises ValueError, TypeError, OSError, EOFError, ...
        raise ValueError(f"Cannot read MATLAB file {path!r}: {error}") from error


def read_rgb(root, image_id):
    """Reads ``data/images/img_{id}.png`` as uint8 (H, W, 3) RGB."""
    return read_image_file(_image_path(root, "images", image_id), "RGB")


def read_hha(root, image_id):
    """Reads ``data/hha/img_{id}.png`` as uint8 (H, W, 3)."""
    return read_image_file(_image_path(root, "hha", image_id), "RGB")


def read_depth(root, image_id):
    """Reads ``data/depth/img_{id}.png`` (uint16 millimetres) as float32 metres (0 = missing)."""
    return read_image_file(_image_path(root, "depth", image_id)).astype(np.float32) / 1000.0


def read_label(root, image_id):
    """Reads ``segmentation/img_{id}.mat`` as training ids: uint8 (H, W), 0..39, void 255.

    Example:
        >>> read_label("data/nyud", "5001").max() <= 39 or True  # doctest: +SKIP
    """
    path = os.path.join(os.fspath(root), "segmentation", f"img_{image_id}.mat")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYUDv2 label file not found: {path!r}")
    contents = load_mat(path)
    if "segmentation" not in contents:
        raise ValueError(f"{path!r} has no 'segmentation' field.")
    return to_train_ids(contents["segmentation"])


def preprocess_rgb(rgb):
    """RGB 0..255 -> BGR minus the NYUDv2 mean (the reference's colour input), float32.

    Example:
        >>> preprocess_rgb(np.zeros((1, 1, 3)))[0, 0].astype(float).round(3).tolist()
        [-116.19, -97.203, -92.318]
    """
    bgr = np.asarray(rgb, np.float32)[..., ::-1]
    return bgr - np.asarray(NYUD_MEAN_BGR, np.float32)


def preprocess_hha(hha):
    """HHA 0..255 minus the NYUDv2 HHA mean (no channel swap, as the reference), float32."""
    return np.asarray(hha, np.float32) - np.asarray(NYUD_MEAN_HHA, np.float32)


def preprocess_depth(depth):
    """Depth in metres -> ``log(depth_mm) - 7.844`` (the reference), 0 where depth is missing.

    Returns:
        float32 (H, W, 1).
    """
    depth_mm = np.asarray(depth, np.float32) * 1000.0
    valid = np.isfinite(depth_mm) & (depth_mm > 0)
    log_depth = np.log(np.where(valid, depth_mm, 1.0)) - NYUD_MEAN_LOG_DEPTH
    return np.where(valid, log_depth, 0.0).astype(np.float32)[..., None]


def preprocess_rgbd(rgb, depth):
    """4-channel RGB-D input: :func:`preprocess_rgb` and :func:`preprocess_depth` stacked."""
    return np.concatenate([preprocess_rgb(rgb), preprocess_depth(depth)], axis=-1)


def load_example(root, image_id, modality="rgb"):
    """Loads one preprocessed example of the FCN layout.

    Args:
        root: data folder. image_id: id string. modality: ``"rgb"``, ``"hha"``, ``"rgbd"`` or
            ``"fusion"``.

    Returns:
        ``(inputs, label)``: inputs float32 (H, W, 3|4), or for ``"fusion"`` a dict
        ``{"rgb": (H, W, 3), "hha": (H, W, 3)}``; label uint8 (H, W) training ids.

    Example:
        >>> inputs, label = load_example("data/nyud", "5001", "fusion")  # doctest: +SKIP
    """
    check_choice("modality", modality, MODALITIES)
    label = read_label(root, image_id)
    if modality == "rgb":
        inputs = preprocess_rgb(read_rgb(root, image_id))
    elif modality == "hha":
        inputs = preprocess_hha(read_hha(root, image_id))
    elif modality == "rgbd":
        inputs = preprocess_rgbd(read_rgb(root, image_id), read_depth(root, image_id))
    else:
        inputs = {"rgb": preprocess_rgb(read_rgb(root, image_id)),
                  "hha": preprocess_hha(read_hha(root, image_id))}
    return inputs, label


def input_channels(modality):
    """Input channels of a modality: 3 (rgb, hha, each fusion stream) or 4 (rgbd)."""
    check_choice("modality", modality, MODALITIES)
    return 4 if modality == "rgbd" else 3


def _load_flat(root, modality, image_id):
    inputs, label = load_example(root, image_id.decode(), modality)
    arrays = [inputs["rgb"], inputs["hha"]] if modality == "fusion" else [inputs]
    return (*arrays, label.astype(np.int32))


def make_nyud_dataset(root, split="train", modality="rgb", ids=None, batch_size=1,
                      shuffle=False, seed=None, flip=False):
    """A ``tf.data`` pipeline of preprocessed NYUDv2 examples from the FCN layout.

    Whole images at their own size (the paper's batch-1 setting); all NYUDv2 images have the
    same size, so ``batch_size > 1`` works too.

    Args:
        root: data folder. split: see :func:`nyud_ids` (ignored when ``ids`` is given).
        modality: ``"rgb"``, ``"hha"``, ``"rgbd"`` or ``"fusion"``.
        ids: explicit id list. batch_size: images per batch.
        shuffle: shuffle the ids every epoch. seed: shuffle and flip seed.
        flip: random left-right flips (the reference trains without augmentation).

    Returns:
        ``tf.data.Dataset`` of ``(inputs, labels)``: inputs float32 (B, H, W, C) or the dict
        ``{"rgb", "hha"}`` for ``"fusion"``; labels int32 (B, H, W), void 255.

    Example:
        >>> ds = make_nyud_dataset("data/nyud", "test", modality="hha")  # doctest: +SKIP
    """
    import tensorflow as tf

    check_choice("modality", modality, MODALITIES)
    ids = list(ids) if ids is not None else nyud_ids(root, split)
    if not ids:
        raise ValueError(f"No NYUDv2 ids for split={split!r} in {os.fspath(root)!r}.")
    channels = input_channels(modality)
    n_inputs = 2 if modality == "fusion" else 1
    load = functools.partial(_load_flat, os.fspath(root), modality)

    def load_tf(image_id):
        out = tf.numpy_function(load, [image_id], [tf.float32] * n_inputs + [tf.int32])
        inputs = [tf.ensure_shape(x, [None, None, channels]) for x in out[:n_inputs]]
        label = tf.ensure_shape(out[-1], [None, None])
        if flip:
            do_flip = tf.random.uniform([], seed=seed) < 0.5
            inputs = [tf.cond(do_flip, lambda x=x: x[:, ::-1], lambda x=x: x) for x in inputs]
            label = tf.cond(do_flip, lambda: label[:, ::-1], lambda: label)
        if modality == "fusion":
            return {"rgb": inputs[0], "hha": inputs[1]}, label
        return inputs[0], label

    ds = tf.data.Dataset.from_tensor_slices(ids)
    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Synthetic files in the real formats (tests and the recipes' --synthetic mode)
# ---------------------------------------------------------------------------------------------


def write_fake_class_mapping(path):
    """Writes a fake ``classMapping40.mat``: ``mapClass[i - 1] = (i - 1) % 40 + 1``.

    Example:
        >>> write_fake_class_mapping("/tmp/classMapping40.mat")  # doctest: +SKIP
    """
    import scipy.io

    mapping = (np.arange(NUM_RAW_CLASSES) % NUM_CLASSES + 1).astype(np.float64)[None, :]
    scipy.io.savemat(os.fspath(path), {"mapClass": mapping,
                                       "className": np.array(NYUD_CLASSES, dtype=object)})


def fake_scene(height=48, width=64, seed=0):
    """A tiny synthetic RGB-D scene: wall (raw label 1), floor (2), a box (29), void border.

    With the fake class mapping the 40-class labels are 1 (wall), 2 (floor), 29 (box) and
    0 (void); RGB colours follow the labels (with noise) so a tiny model can learn them.

    Returns:
        ``(rgb uint8 (H, W, 3), depth float32 (H, W) metres, raw_labels uint16 (H, W))``.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(height)[:, None] * np.ones((1, width))
    raw = np.where(rows < height // 2, 1, 2).astype(np.uint16)
    top, left = height // 4 + rng.integers(0, height // 4), rng.integers(0, width // 2)
    raw[top:top + height // 4, left:left + width // 4] = 29
    raw[:, :2] = 0  # void border, as NYUDv2's unlabelled frame
    colours = {0: (0, 0, 0), 1: (200, 190, 170), 2: (90, 60, 40), 29: (40, 120, 200)}
    rgb = np.zeros((height, width, 3), np.float32)
    for label, colour in colours.items():
        rgb[raw == label] = colour
    rgb = np.clip(rgb + rng.normal(0, 10, rgb.shape), 0, 255).astype(np.uint8)
    depth = (2.0 + 2.0 * (1.0 - rows / height)).astype(np.float32)
    depth[raw == 29] -= 0.5
    return rgb, depth, raw


def write_fake_labeled_mat(path, num_images=4, height=48, width=64):
    """Writes a small ``nyu_depth_v2_labeled.mat`` look-alike (HDF5, MATLAB v7.3 axis order).

    Stores ``images`` (N, 3, W, H) uint8, ``depths`` (N, W, H) float32 and ``labels``
    (N, W, H) uint16 as h5py sees a MATLAB v7.3 file, with scenes from :func:`fake_scene`.

    Returns:
        List of ``(rgb, depth, raw_labels)`` in natural (H, W) orientation, for checks.

    Example:
        >>> scenes = write_fake_labeled_mat("/tmp/nyu.mat", num_images=2)  # doctest: +SKIP
    """
    import h5py

    scenes = [fake_scene(height, width, seed=i) for i in range(num_images)]
    with h5py.File(os.fspath(path), "w") as f:
        f["images"] = np.stack([rgb.transpose(2, 1, 0) for rgb, _, _ in scenes])
        f["depths"] = np.stack([depth.T for _, depth, _ in scenes])
        f["labels"] = np.stack([raw.T for _, _, raw in scenes])
    return scenes


def write_fake_nyud(root, num_images=4, height=48, width=64, splits=None):
    """Writes a tiny NYUDv2 data folder in the FCN layout (via a fake labelled ``.mat``).

    Args:
        root: output folder. num_images: images (ids 5001..). height, width: image size.
        splits: ``{split: ids}``; default: all but the last image train/val, the last test.

    Returns:
        The folder path.

    Example:
        >>> root = write_fake_nyud("/tmp/fake_nyud")  # doctest: +SKIP
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    mat_path = os.path.join(root, "nyu_depth_v2_labeled.mat")
    mapping_path = os.path.join(root, "classMapping40.mat")
    write_fake_labeled_mat(mat_path, num_images, height, width)
    write_fake_class_mapping(mapping_path)
    for example in iter_labeled_mat(mat_path, class_mapping=mapping_path):
        write_example(root, example["id"], example["rgb"], example["depth"], example["label"],
                      hha_lib.compute_hha(example["depth"]))
    ids = [str(ID_OFFSET + i + 1) for i in range(num_images)]
    write_split_files(root, splits or {"train": ids[:-1], "val": ids[:-1], "test": ids[-1:]})
    return root
