"""NYUDv2 in the FCN layout: constants, split ids, label ids, and the files of one image.

Example:
    >>> len(nyud_split_ids("trainval")), to_train_ids(np.array([0, 1])).tolist()
    (795, [255, 0])
"""

import os

import numpy as np

from keras_fcn._checks import check_choice
from keras_fcn.datasets.common import (
    load_mat,
    read_image_file,
    read_list_file,
    resource_path,
    void_zero_to_train_ids,
    write_list_file,
    write_png,
)

from keras_fcn.classes import (  # noqa: E402,F401  (re-exported)
    NYUD_CLASSES,
    NYUD_MEAN_BGR,
    NYUD_MEAN_HHA,
    NYUD_MEAN_LOG_DEPTH,
)

NUM_CLASSES = 40
ID_OFFSET = 5000
NUM_RAW_CLASSES = 894


SPLITS = ("train", "val", "trainval", "test")
MODALITIES = ("rgb", "hha", "rgbd", "fusion")


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
    return read_list_file(resource_path(f"nyud_{split}.txt"))


def nyud_ids(root, split="train"):
    """Split ids of a data folder: ``root/{split}.txt`` when present, else the bundled lists.

    Example:
        >>> ids = nyud_ids("data/nyud", "test")  # doctest: +SKIP
    """
    check_choice("split", split, SPLITS)
    path = os.path.join(os.fspath(root), f"{split}.txt")
    if os.path.isfile(path):
        return read_list_file(path)
    if split == "trainval" and all(
        os.path.isfile(os.path.join(os.fspath(root), f"{s}.txt")) for s in ("train", "val")
    ):
        return nyud_ids(root, "train") + nyud_ids(root, "val")
    return nyud_split_ids(split)


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


def example_paths(root, image_id):
    """``{"rgb", "depth", "hha", "label"}`` -> the files of one image in the FCN layout.

    Example:
        >>> example_paths("data/nyud", "5001")["hha"]
        'data/nyud/data/hha/img_5001.png'
    """
    root, name = os.fspath(root), f"img_{image_id}"
    return {"rgb": os.path.join(root, "data", "images", f"{name}.png"),
            "depth": os.path.join(root, "data", "depth", f"{name}.png"),
            "hha": os.path.join(root, "data", "hha", f"{name}.png"),
            "label": os.path.join(root, "segmentation", f"{name}.mat")}


def write_example(root, image_id, rgb, depth, labels40, hha=None, keep_existing=False):
    """Writes one image in the FCN layout (see the module docstring).

    Args:
        root: output folder. image_id: id string such as ``"5001"``.
        rgb: uint8 (H, W, 3). depth: float (H, W) metres (stored as uint16 millimetres).
        labels40: (H, W) 40-class labels, 0 = void. hha: optional uint8 (H, W, 3).
        keep_existing: leave a file that already exists as it is (e.g. the FCN authors'
            HHA and cropped images of ``nyud.tar.gz``).

    Returns:
        The number of files kept because they existed.

    Example:
        >>> write_example("out", "5001", rgb, depth, labels40, compute_hha(depth))  # doctest: +SKIP
    """
    import scipy.io

    paths = example_paths(root, image_id)
    kept = 0

    def wanted(kind):
        nonlocal kept
        exists = keep_existing and os.path.exists(paths[kind])
        kept += exists
        return not exists

    if wanted("rgb"):
        write_png(paths["rgb"], np.asarray(rgb, np.uint8))
    if wanted("depth"):
        depth_mm = np.clip(np.rint(np.nan_to_num(np.asarray(depth)) * 1000.0), 0, 65535)
        write_png(paths["depth"], depth_mm.astype(np.uint16))
    if hha is not None and wanted("hha"):
        write_png(paths["hha"], np.asarray(hha, np.uint8))
    if wanted("label"):
        os.makedirs(os.path.dirname(paths["label"]), exist_ok=True)
        scipy.io.savemat(paths["label"], {"segmentation": np.asarray(labels40, np.uint8)},
                         do_compression=True)
    return kept


def check_split_files(root, splits, overwrite=False):
    """Raises FileExistsError naming the split files of `root` that hold other ids than
    `splits` ({split: ids}) would write, unless `overwrite` (files with the same ids are fine).

    Example:
        >>> check_split_files("data/nyud", {"train": ["5001"]})  # doctest: +SKIP
    """
    differ = []
    for split, ids in splits.items():
        path = os.path.join(os.fspath(root), f"{split}.txt")
        if not os.path.isfile(path):
            continue
        existing = read_list_file(path)
        if existing != [str(i) for i in ids]:
            differ.append(f"'{path}' ({len(existing)} ids, would be {len(ids)})")
    if differ and not overwrite:
        raise FileExistsError(
            f"NYUDv2 split file(s) already exist with other ids: {', '.join(differ)}. Pass "
            "overwrite=True to replace them, or remove them.")


def write_split_files(root, splits=None, overwrite=False):
    """Writes ``root/<split>.txt`` for each split of `splits` ({split: ids}; by default the
    bundled train, val and test; ``convert_labeled_mat`` adds ``trainval`` where one exists).

    Raises:
        FileExistsError: a split file exists with other ids, and not ``overwrite`` (nothing
            is written; see :func:`check_split_files`).

    Example:
        >>> write_split_files("data/nyud")  # doctest: +SKIP
    """
    splits = splits or {s: nyud_split_ids(s) for s in ("train", "val", "test")}
    check_split_files(root, splits, overwrite)
    os.makedirs(os.fspath(root), exist_ok=True)
    for split, ids in splits.items():
        write_list_file(os.path.join(os.fspath(root), f"{split}.txt"), ids)


def read_rgb(root, image_id):
    """Reads ``data/images/img_{id}.png`` as uint8 (H, W, 3) RGB.

    Example:
        >>> read_rgb("data/nyud", "5001").shape  # doctest: +SKIP
        (425, 560, 3)
    """
    return read_image_file(example_paths(root, image_id)["rgb"], "RGB")


def read_hha(root, image_id):
    """Reads ``data/hha/img_{id}.png`` as uint8 (H, W, 3).

    Example:
        >>> read_hha("data/nyud", "5001").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    return read_image_file(example_paths(root, image_id)["hha"], "RGB")


def read_depth(root, image_id):
    """Reads ``data/depth/img_{id}.png`` (uint16 millimetres) as float32 metres (0 = missing).

    Example:
        >>> float(read_depth("data/nyud", "5001").max()) < 10  # doctest: +SKIP
        True
    """
    return read_image_file(example_paths(root, image_id)["depth"]).astype(np.float32) / 1000.0


def read_label(root, image_id):
    """Reads ``segmentation/img_{id}.mat`` as training ids: uint8 (H, W), 0..39, void 255.

    Example:
        >>> read_label("data/nyud", "5001").max() <= 39 or True  # doctest: +SKIP
    """
    path = example_paths(root, image_id)["label"]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYUDv2 label file not found: {path!r}")
    contents = load_mat(path)
    if "segmentation" not in contents:
        raise ValueError(f"{path!r} has no 'segmentation' field.")
    return to_train_ids(contents["segmentation"])


def size_problem(image_id, arrays, label):
    """The message when an input of `arrays` ({kind: (H, W, ...)}) has another size than the
    label (None when all agree); `datasets.check` and `load_example` use it.

    Example:
        >>> size_problem("5001", {"rgb": np.zeros((3, 4, 3))}, np.zeros((3, 5)))
        "NYUDv2 rgb of '5001' is (3, 4) but its label is (3, 5)"
    """
    for kind, array in arrays.items():
        if tuple(array.shape[:2]) != tuple(label.shape):
            return (f"NYUDv2 {kind} of {image_id!r} is {tuple(array.shape[:2])} but its label is "
                    f"{tuple(label.shape)}")
    return None
