"""(image, mask) file pairs of the supported data sets, by name: no TensorFlow needed.

`file_pairs(name, split, data_dir, ...)` lists one split of a data set read from files, with its
`DatasetInfo`; `keras_fcn.datasets.load_split` decodes them with tf.data,
`keras_fcn.data.arrays.make_pydataset` without TensorFlow.

Example:
    pairs, info = file_pairs("camvid", "val", "~/data/camvid", holdout="0006R0")
"""

import os

from keras_fcn.datasets import shapes
from keras_fcn.datasets.base import DatasetInfo
from keras_fcn.datasets.camvid import CAMVID_INFO, camvid_pairs
from keras_fcn.datasets.folder import split_pairs
from keras_fcn.datasets.voc import (
    SBD_INFO,
    VOC_INFO,
    folder_swap_hint,
    sbd_pairs,
    seg11valid_pairs,
    voc_pairs,
)
from keras_fcn.labels import IGNORE_LABEL, check_colour, voc_palette

DATASETS = ("shapes", "camvid", "voc", "sbd", "folder", "tfds:<name>")
HOLDOUT_DATASETS = ("camvid", "folder")  # the data sets that can hold out groups of frames
# The data sets read from files whose classes are fixed (--num_classes cannot change them).
FIXED_CLASSES = {"shapes": shapes.SHAPES_INFO, "camvid": CAMVID_INFO, "voc": VOC_INFO,
                 "sbd": SBD_INFO}


def check_fixed_classes(name, num_classes):
    """Refuses a `num_classes` that is not the class count of a data set with fixed classes
    (`FIXED_CLASSES`): the data would train its own classes anyway, and the run would record
    the wrong count. None (unset) passes.

    Example:
        >>> check_fixed_classes("voc", 5)
        Traceback (most recent call last):
        ValueError: --dataset=voc has 21 classes (fixed); --num_classes cannot change them:
        leave --num_classes out (or pass --num_classes=21). Received: num_classes=5
    """
    info = FIXED_CLASSES.get(name)
    if info is None or num_classes is None or num_classes == info.num_classes:
        return
    raise ValueError(
        f"--dataset={name} has {info.num_classes} classes (fixed); --num_classes cannot change "
        f"them: leave --num_classes out (or pass --num_classes={info.num_classes}). Received: "
        f"num_classes={num_classes!r}")


def custom_info(name, num_classes, ignore_label=IGNORE_LABEL):
    """`DatasetInfo` of a data set without metadata: classes "0", "1", ..., the PASCAL VOC
    colours (those of VOC's palette PNGs and of tools such as labelme that follow them; they
    were random colours, some near each other).

    Example:
        >>> custom_info("folder", 3).class_names, custom_info("folder", 3).palette[1]
        (('0', '1', '2'), (128, 0, 0))
    """
    if not num_classes:
        raise ValueError(f"--dataset={name} needs --num_classes. Received: num_classes="
                         f"{num_classes!r}")
    palette = voc_palette(int(num_classes))  # a tuple of (r, g, b) int tuples
    return DatasetInfo(name, int(num_classes), tuple(str(i) for i in range(num_classes)),
                       palette, ignore_label=int(ignore_label))


CLASSES_FILE = "classes.json"  # a `folder` data set's class names and mask colours
CLASSES_KEYS = ("classes", "palette", "mask_format", "void_color")


def folder_info(data_dir, num_classes=None, ignore_label=IGNORE_LABEL):
    """`DatasetInfo` of a `folder` data set: from its `classes.json` when there is one, else
    `custom_info` (classes "0", "1", ..., `num_classes` needed).

    `classes.json` holds "classes" (the names, in class-id order), optionally "palette" (one
    [r, g, b] per class: the colours of predictions, and of the masks with "mask_format":
    "rgb") and, for colour masks, "void_color" (the colour of void pixels, which get the
    ignore label `len(classes)`; without it every mask colour must be in the palette).

    Raises:
        ValueError: a bad `classes.json` (not JSON, an unknown key, a palette of another
            length than the classes, ...) or `num_classes` that is not its number of classes.

    Example:
        >>> import json, os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with open(os.path.join(folder, "classes.json"), "w") as file:
        ...     json.dump({"classes": ["sky", "road"], "palette": [[0, 0, 255], [128, 64, 128]],
        ...                "mask_format": "rgb", "void_color": [0, 0, 0]}, file)
        >>> info = folder_info(folder)
        >>> info.class_names, info.ignore_label, info.dataset_kwargs()["palette"][-1]
        (('sky', 'road'), 2, (0, 0, 0))
    """
    path = os.path.join(os.path.expanduser(os.fspath(data_dir)), CLASSES_FILE)
    if not os.path.isfile(path):
        return custom_info("folder", num_classes, ignore_label)
    spec = _read_classes_file(path)
    names = spec.get("classes")
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n for n in names)):
        raise ValueError(f"'{path}': \"classes\" must be a non-empty list of class names, in "
                         f"class-id order. Received: {names!r}")
    if num_classes and int(num_classes) != len(names):
        raise ValueError(f"num_classes={num_classes} but '{path}' names {len(names)} classes; "
                         "leave num_classes out or make them agree")
    mask_format = spec.get("mask_format", "index")
    if mask_format not in ("index", "rgb"):
        raise ValueError(f"'{path}': \"mask_format\" must be 'index' (masks of class ids) or "
                         f"'rgb' (colour masks). Received: {mask_format!r}")
    palette = spec.get("palette")
    if palette is None and mask_format == "rgb":
        raise ValueError(f"'{path}': colour masks (\"mask_format\": \"rgb\") need a "
                         "\"palette\": one [r, g, b] per class")
    if palette is None:
        palette = list(voc_palette(len(names)))
    if not isinstance(palette, list) or len(palette) != len(names):
        raise ValueError(f"'{path}': \"palette\" must be a list of one [r, g, b] per class "
                         f"({len(names)}). Received: {palette!r}")
    palette = [check_colour(c, f"'{path}' palette[{i}]") for i, c in enumerate(palette)]
    void = spec.get("void_color")
    if void is not None:
        if mask_format != "rgb":
            raise ValueError(f"'{path}': \"void_color\" is for colour masks (\"mask_format\": "
                             f"\"rgb\"); index masks take the ignore label. Received: "
                             f"void_color={void!r}")
        palette.append(check_colour(void, f"'{path}' void_color"))
        ignore_label = len(names)  # the void colour's entry: its pixels get this label
    return DatasetInfo("folder", len(names), tuple(names), tuple(palette),
                       ignore_label=int(ignore_label), mask_format=mask_format)


def _read_classes_file(path):
    import json

    try:
        with open(path, encoding="utf-8") as file:
            spec = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read '{path}' as JSON: {error}") from error
    if not isinstance(spec, dict):
        raise ValueError(f"'{path}' must hold a JSON object with the keys {CLASSES_KEYS}. "
                         f"Received: {type(spec).__name__}")
    unknown = sorted(set(spec) - set(CLASSES_KEYS))
    if unknown:
        raise ValueError(f"'{path}' has unknown key(s) {unknown}; expected some of "
                         f"{CLASSES_KEYS}")
    return spec


def check_files_exist(pairs, data_dir):
    """Raises FileNotFoundError naming the first (image, mask) pair file that does not exist
    (a wrong path in a list file), before any is decoded.

    Example:
        >>> check_files_exist([("a.jpg", "a.png")], "data")  # doctest: +SKIP
        Traceback (most recent call last):
        FileNotFoundError: image file 'a.jpg' (paired with mask 'a.png') does not exist; ...
    """
    for image, mask in pairs:
        for kind, path, other, other_path in (("image", image, "mask", mask),
                                              ("mask", mask, "image", image)):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{kind} file '{path}' (paired with {other} '{other_path}') does not exist; "
                    f"the paths of a list file are relative to data_dir={data_dir!r}")


def check_holdout(name, holdout, group_by):
    if holdout is not None and name not in HOLDOUT_DATASETS:
        raise ValueError(f"holdout works with the data sets {HOLDOUT_DATASETS}. Received: "
                         f"dataset={name!r}, holdout={holdout!r}")
    if group_by is not None and name != "folder":
        raise ValueError(f"group_by works with dataset 'folder' (camvid groups its frames by "
                         f"drive). Received: dataset={name!r}, group_by={group_by!r}")


def file_pairs(name, split, data_dir, val_data_dir=None, num_classes=None,
               ignore_label=IGNORE_LABEL, holdout=None, group_by=None):
    """(pairs, `DatasetInfo`) of one split of a data set read from (image, mask) files.

    `holdout` and `group_by` are those of `load_split`.

    Example:
        pairs, info = file_pairs("camvid", "val", "~/data/camvid")
    """
    check_holdout(name, holdout, group_by)
    if name == "camvid":
        return camvid_pairs(data_dir, split, holdout=holdout)
    if name == "folder":
        return (split_pairs(data_dir, split, group_by=group_by, holdout=holdout),
                folder_info(data_dir, num_classes, ignore_label))
    if name == "shapes":
        return shapes.shapes_pairs(data_dir, split)
    if name in ("voc", "sbd"):
        try:
            if name == "voc":
                return voc_pairs(data_dir, split, flag="--data_dir")
            if split == "val" and val_data_dir:
                return seg11valid_pairs(val_data_dir, flag="--val_data_dir",
                                        check_files=True)
            return sbd_pairs(data_dir, split, flag="--data_dir")
        except FileNotFoundError as error:
            hint = folder_swap_hint(name, data_dir, val_data_dir)
            if hint is None:
                raise
            raise FileNotFoundError(f"{error} {hint}") from None
    raise ValueError(f"Unknown dataset. Expected one of {DATASETS}. Received: dataset={name!r}")
