"""SIFT Flow (Liu et al.; LabelMe subset of 2,688 outdoor images, 256x256) for the FCN paper's
two-headed model: 33 semantic and 3 geometric classes.

Layout of ``SiftFlowDataset.zip`` (as read by the reference ``siftflow_layers.py``)::

    root/Images/spatial_envelope_256x256_static_8outdoorcategories/{id}.jpg
    root/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/{id}.mat  field "S"
    root/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/{id}.mat       field "S"
    root/{trainval,test}.txt   optional split files (ids such as "coast_natu975")

(``GeometricLabels/`` is accepted in place of ``GeoLabels/``.)

Labels, as training ids (what the readers return):

- semantic: the files hold 0 = unlabelled and 1..33 (``SEMANTIC_CLASSES``); mapped to 0..32,
  void 255;
- geometric: the files hold -1 = void, 1 = sky, 2 = horizontal, 3 = vertical (0 is treated as
  void too, as the reference does); mapped to 0..2, void 255.

Split: the standard 200 test images (bundled, ``resources/siftflow_test.txt``, from the FCN
code) and the other 2,488 for training. Three semantic classes (cow, desert, moon) never occur
in the test set and the paper leaves them out of the evaluation: see
:func:`semantic_eval_confusion`. Two images (``highway_bost181``, ``street_urb506``) have no
annotation; their pixels are all void, so they add nothing to the loss or metrics.
"""

import functools
import os

import numpy as np

from keras_fcn._checks import check_choice
from keras_fcn.classes import (  # noqa: F401  (SIFTFLOW_MEAN_BGR re-exported)
    SIFTFLOW_GEOMETRIC_CLASSES,
    SIFTFLOW_MEAN_BGR,
    SIFTFLOW_SEMANTIC_CLASSES,
)
from keras_fcn.datasets import common
from keras_fcn.labels import IGNORE_LABEL

SEMANTIC_CLASSES = SIFTFLOW_SEMANTIC_CLASSES
GEOMETRIC_CLASSES = SIFTFLOW_GEOMETRIC_CLASSES
NUM_SEMANTIC = 33
NUM_GEOMETRIC = 3
EXCLUDED_FROM_EVAL = ("cow", "desert", "moon")
UNANNOTATED = ("highway_bost181", "street_urb506")
SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"
SPLITS = ("train", "trainval", "test")


def siftflow_test_ids():
    """The 200 SIFT Flow test ids of the FCN paper (bundled).

    Example:
        >>> ids = siftflow_test_ids(); len(ids), ids[0]
        (200, 'coast_natu975')
    """
    return common.read_list_file(common.resource_path("siftflow_test.txt"))


def image_ids(root):
    """Ids of all images in ``root/Images/...`` (sorted file stems).

    Example:
        >>> image_ids("data/sift-flow")[:1]  # doctest: +SKIP
        ['coast_arnat59']
    """
    folder = os.path.join(os.fspath(root), "Images", SUBDIR)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"SIFT Flow image folder not found: {folder!r}")
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".jpg"))


def siftflow_ids(root, split="trainval"):
    """Ids of a split: ``root/{split}.txt`` when present, else the standard split.

    ``"train"`` and ``"trainval"`` are the same set (the paper has no separate validation
    split): every image of ``root`` that is not a test image (2,488 with the full data set).

    Example:
        >>> len(siftflow_ids("data/sift-flow", "test"))  # doctest: +SKIP
        200
    """
    check_choice("split", split, SPLITS)
    root = os.fspath(root)
    for name in ((split,) if split == "test" else ("trainval", "train")):
        path = os.path.join(root, f"{name}.txt")
        if os.path.isfile(path):
            return common.read_list_file(path)
    if split == "test":
        return siftflow_test_ids()
    test = set(siftflow_test_ids())
    return [i for i in image_ids(root) if i not in test]


def _split_file(root, split):
    """The list file of ``root`` that :func:`siftflow_ids` reads for ``split``, or None."""
    for name in ((split,) if split == "test" else ("trainval", "train")):
        path = os.path.join(os.fspath(root), f"{name}.txt")
        if os.path.isfile(path):
            return path
    return None


def _example_paths(root, image_id):
    root = os.fspath(root)
    return {"image": os.path.join(root, "Images", SUBDIR, f"{image_id}.jpg"),
            "semantic label": os.path.join(root, "SemanticLabels", SUBDIR, f"{image_id}.mat"),
            "geometric label": os.path.join(root, _geometric_dir(root), SUBDIR,
                                            f"{image_id}.mat")}


def check_split_files(root, split):
    """The ids of ``split`` (:func:`siftflow_ids`) after checking that each one's image and
    label files exist, so that a run stops before training, not at its first validation.

    Raises:
        FileNotFoundError: naming the missing files (the first 3 and their count), and where
            the ids came from: the split's list file, or the bundled list of the paper's 200
            test images (write ``test.txt`` in ``root`` to use one's own).
        ValueError: a split without ids.

    Example:
        >>> len(check_split_files("data/sift-flow", "test"))  # doctest: +SKIP
        200
    """
    check_choice("split", split, SPLITS)
    ids = siftflow_ids(root, split)
    if not ids:
        raise ValueError(f"No SIFT Flow ids for split={split!r} in {os.fspath(root)!r}.")
    missing = [f"{path!r} ({kind})" for image_id in ids
               for kind, path in _example_paths(root, image_id).items()
               if not os.path.isfile(path)]
    if missing:
        listed = _split_file(root, split)
        source = (f"listed in {listed!r}" if listed else
                  "of the bundled list of the paper's 200 test images "
                  f"({common.resource_path('siftflow_test.txt')!r}); write "
                  f"{os.path.join(os.fspath(root), 'test.txt')!r} (one id a line) to use "
                  "your own" if split == "test" else
                  f"of the images of {os.path.join(os.fspath(root), 'Images', SUBDIR)!r}")
        raise FileNotFoundError(
            f"SIFT Flow {split} split: {len(missing)} file(s) not found for the ids "
            f"{source}: {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
    return ids


def semantic_to_train_ids(labels):
    """Semantic labels (0 = unlabelled, 1..33) -> training ids (0..32, void 255), uint8.

    Example:
        >>> semantic_to_train_ids(np.array([0, 1, 33])).tolist()
        [255, 0, 32]
    """
    return common.void_zero_to_train_ids(labels, NUM_SEMANTIC, "SIFT Flow semantic labels")


def geometric_to_train_ids(labels):
    """Geometric labels (-1 or 0 = void, 1 sky, 2 horizontal, 3 vertical) -> 0..2, void 255.

    Example:
        >>> geometric_to_train_ids(np.array([-1, 0, 1, 3])).tolist()
        [255, 255, 0, 2]
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < -1 or labels.max() > NUM_GEOMETRIC):
        raise ValueError(
            f"SIFT Flow geometric labels must be in -1..{NUM_GEOMETRIC}. Received values in "
            f"{labels.min()}..{labels.max()}"
        )
    return np.where(labels <= 0, IGNORE_LABEL, labels - 1).astype(np.uint8)


def _read_s(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SIFT Flow label file not found: {path!r}")
    contents = common.load_mat(path)
    if "S" not in contents:
        raise ValueError(f"{path!r} has no 'S' field.")
    return np.asarray(contents["S"])


def _geometric_dir(root):
    for name in ("GeoLabels", "GeometricLabels"):
        if os.path.isdir(os.path.join(root, name)):
            return name
    return "GeoLabels"


def read_image(root, image_id):
    """Reads ``Images/.../{id}.jpg`` as uint8 (H, W, 3) RGB.

    Example:
        >>> read_image("data/sift-flow", "coast_natu975").shape  # doctest: +SKIP
        (256, 256, 3)
    """
    path = _example_paths(root, image_id)["image"]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SIFT Flow image not found: {path!r}")
    return common.read_image_file(path, "RGB")


def read_semantic_label(root, image_id):
    """Reads ``SemanticLabels/.../{id}.mat`` as training ids uint8 (H, W), void 255.

    Example:
        >>> read_semantic_label("data/sift-flow", "coast_natu975").max() <= 32  # doctest: +SKIP
        True
    """
    return semantic_to_train_ids(_read_s(_example_paths(root, image_id)["semantic label"]))


def read_geometric_label(root, image_id):
    """Reads ``GeoLabels/.../{id}.mat`` as training ids uint8 (H, W), void 255.

    Example:
        >>> read_geometric_label("data/sift-flow", "coast_natu975").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    return geometric_to_train_ids(_read_s(_example_paths(root, image_id)["geometric label"]))


def preprocess_image(rgb):
    """RGB 0..255 -> BGR minus the SIFT Flow mean (the reference's input), float32.

    Example:
        >>> preprocess_image(np.zeros((1, 1, 3)))[0, 0].astype(float).round(3).tolist()
        [-114.578, -115.294, -108.353]
    """
    return np.asarray(rgb, np.float32)[..., ::-1] - np.asarray(SIFTFLOW_MEAN_BGR, np.float32)


def load_example(root, image_id, preprocess=True):
    """One preprocessed example: ``(image float32 (H, W, 3), {"semantic", "geometric"})``;
    with ``preprocess=False`` the image is RGB 0..255 as read (float32), for a model with its
    own ``preprocess`` layer of the SIFT Flow mean (examples/train_siftflow.py).

    Example:
        >>> image, labels = load_example("data/sift-flow", "coast_natu975")  # doctest: +SKIP
        >>> labels["semantic"].shape, labels["geometric"].dtype  # doctest: +SKIP
        ((256, 256), dtype('uint8'))
    """
    image = read_image(root, image_id)
    image = preprocess_image(image) if preprocess else np.asarray(image, np.float32)
    labels = {"semantic": read_semantic_label(root, image_id),
              "geometric": read_geometric_label(root, image_id)}
    for task, label in labels.items():
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"SIFT Flow {task} label of {image_id!r} has shape {label.shape}, the image "
                f"{image.shape[:2]}."
            )
    return image, labels


def _load_flat(root, preprocess, image_id):
    image, labels = load_example(root, image_id.decode(), preprocess)
    return image, labels["semantic"].astype(np.int32), labels["geometric"].astype(np.int32)


def make_siftflow_dataset(root, split="trainval", ids=None, batch_size=1, shuffle=False,
                          seed=None, flip=False, preprocess=True):
    """A ``tf.data`` pipeline of preprocessed SIFT Flow examples for the two-headed FCN.

    Args:
        root: data folder. split: ``"train"``/``"trainval"`` or ``"test"`` (ignored when
            ``ids`` is given). ids: explicit id list. batch_size: images per batch (all SIFT
            Flow images are 256x256). shuffle: reshuffled each epoch. seed: shuffle and flip
            seed (the same seed gives the same batches). flip: random left-right flips,
            seeded (the reference trains without augmentation). preprocess: False gives
            the images as RGB 0..255 (see :func:`load_example`).

    Returns:
        ``tf.data.Dataset`` of ``(images float32 (B, H, W, 3), {"semantic": int32 (B, H, W),
        "geometric": int32 (B, H, W)})``, void 255.

    Example:
        >>> ds = make_siftflow_dataset("data/sift-flow", "test")  # doctest: +SKIP
        >>> model.evaluate(ds)  # a build_two_headed_fcn model  # doctest: +SKIP
    """
    import tensorflow as tf

    ids = list(ids) if ids is not None else siftflow_ids(root, split)
    if not ids:
        raise ValueError(f"No SIFT Flow ids for split={split!r} in {os.fspath(root)!r}.")
    return common.id_dataset(
        ids, functools.partial(_load_flat, os.fspath(root), preprocess),
        [tf.float32, tf.int32, tf.int32],
        [[None, None, 3], [None, None], [None, None]],
        lambda image, semantic, geometric: (image, {"semantic": semantic,
                                                    "geometric": geometric}),
        batch_size=batch_size, shuffle=shuffle, seed=seed, flip=flip)


def eval_class_indices():
    """Training ids of the 30 semantic classes the paper evaluates (all but cow/desert/moon).

    Example:
        >>> len(eval_class_indices())
        30
    """
    return [i for i, name in enumerate(SEMANTIC_CLASSES) if name not in EXCLUDED_FROM_EVAL]


def semantic_eval_confusion(confusion):
    """Drops the classes absent from the test set (cow, desert, moon) from a 33x33 confusion.

    Pass the result to ``keras_fcn.metrics.segmentation_metrics`` to evaluate as the paper.
    Pixels labelled or predicted as a dropped class leave the matrix with it.

    Args:
        confusion: (33, 33) array, rows = labels, columns = predictions.

    Returns:
        (30, 30) array.

    Example:
        >>> semantic_eval_confusion(np.eye(33)).shape
        (30, 30)
    """
    confusion = np.asarray(confusion)
    if confusion.shape != (NUM_SEMANTIC, NUM_SEMANTIC):
        raise ValueError(
            f"confusion must be ({NUM_SEMANTIC}, {NUM_SEMANTIC}). Received: shape={confusion.shape}"
        )
    keep = eval_class_indices()
    return confusion[np.ix_(keep, keep)]


def fake_scene(size=64, seed=0):
    """A tiny outdoor-like scene: sky (semantic 28, geometric 1) over a horizontal/vertical part.

    Returns:
        ``(rgb uint8 (size, size, 3), semantic (size, size) int32 0..33,
        geometric (size, size) int32 -1..3)`` in the files' conventions.

    Example:
        >>> rgb, semantic, geometric = fake_scene(32)
    """
    rng = np.random.default_rng(seed)
    horizon = size // 3 + int(rng.integers(0, size // 3))
    rows = np.arange(size)[:, None] * np.ones((1, size), int)
    semantic = np.where(rows < horizon, 28, 22)  # sky over road
    geometric = np.where(rows < horizon, 1, 2)
    left = int(rng.integers(0, size // 2))
    semantic[horizon // 2:, left:left + size // 4] = 6  # a building: vertical
    geometric[horizon // 2:, left:left + size // 4] = 3
    semantic[-2:, :] = 0  # unlabelled strip
    geometric[-2:, :] = -1
    colours = {28: (120, 170, 240), 22: (90, 90, 90), 6: (170, 80, 60), 0: (10, 10, 10)}
    rgb = np.zeros((size, size, 3), np.float32)
    for label, colour in colours.items():
        rgb[semantic == label] = colour
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    return rgb, semantic.astype(np.int32), geometric.astype(np.int32)


def write_fake_siftflow(root, num_train=4, num_test=2, size=64):
    """Writes a tiny SIFT Flow folder in the real layout (JPEG images, ``.mat`` ``S`` labels).

    Ids are real-looking (``coast_fake0`` ...); ``trainval.txt`` and ``test.txt`` are written.

    Returns:
        ``{"trainval": ids, "test": ids}``.

    Example:
        >>> splits = write_fake_siftflow("/tmp/fake_siftflow")  # doctest: +SKIP
    """
    import scipy.io
    from PIL import Image

    root = os.fspath(root)
    ids = [f"coast_fake{i}" for i in range(num_train + num_test)]
    for folder in ("Images", "SemanticLabels", "GeoLabels"):
        os.makedirs(os.path.join(root, folder, SUBDIR), exist_ok=True)
    for i, image_id in enumerate(ids):
        rgb, semantic, geometric = fake_scene(size, seed=i)
        Image.fromarray(rgb).save(os.path.join(root, "Images", SUBDIR, f"{image_id}.jpg"),
                                  quality=95)
        scipy.io.savemat(os.path.join(root, "SemanticLabels", SUBDIR, f"{image_id}.mat"),
                         {"S": semantic})
        scipy.io.savemat(os.path.join(root, "GeoLabels", SUBDIR, f"{image_id}.mat"),
                         {"S": geometric})
    splits = {"trainval": ids[:num_train], "test": ids[num_train:]}
    for split, split_ids in splits.items():
        common.write_list_file(os.path.join(root, f"{split}.txt"), split_ids)
    return splits
