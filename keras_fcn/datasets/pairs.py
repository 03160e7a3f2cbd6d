"""(image, mask) file pairs of the supported data sets, by name: no TensorFlow needed.

`file_pairs(name, split, data_dir, ...)` lists one split of a data set read from files, with its
`DatasetInfo`; `keras_fcn.datasets.load_split` decodes them with tf.data,
`keras_fcn.data.arrays.make_pydataset` without TensorFlow.

Example:
    pairs, info = file_pairs("camvid", "val", "~/data/camvid", holdout="0006R0")
"""

import numpy as np

from keras_fcn.datasets import shapes
from keras_fcn.datasets.base import DatasetInfo
from keras_fcn.datasets.camvid import camvid_pairs
from keras_fcn.datasets.folder import split_pairs
from keras_fcn.datasets.voc import sbd_pairs, seg11valid_pairs, voc_pairs
from keras_fcn.labels import IGNORE_LABEL

DATASETS = ("shapes", "camvid", "voc", "sbd", "folder", "tfds:<name>")
HOLDOUT_DATASETS = ("camvid", "folder")  # the data sets that can hold out groups of frames


def custom_info(name, num_classes, ignore_label=IGNORE_LABEL):
    """`DatasetInfo` of a data set without metadata: classes "0", "1", ..., seeded colours.

    Example:
        >>> custom_info("folder", 3).class_names
        ('0', '1', '2')
    """
    if not num_classes:
        raise ValueError(f"--dataset={name} needs --num_classes. Received: num_classes="
                         f"{num_classes!r}")
    palette = tuple(tuple(int(c) for c in colour) for colour in
                    np.random.default_rng(0).integers(0, 256, (num_classes, 3)))
    return DatasetInfo(name, int(num_classes), tuple(str(i) for i in range(num_classes)),
                       palette, ignore_label=int(ignore_label))


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
                custom_info("folder", num_classes, ignore_label))
    if name == "shapes":
        return shapes.shapes_pairs(data_dir, split)
    if name == "voc":
        return voc_pairs(data_dir, split)
    if name == "sbd":
        if split == "val" and val_data_dir:
            return seg11valid_pairs(val_data_dir)
        return sbd_pairs(data_dir, split)
    raise ValueError(f"Unknown dataset. Expected one of {DATASETS}. Received: dataset={name!r}")
