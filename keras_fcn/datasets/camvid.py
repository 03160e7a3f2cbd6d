"""CamVid, the 11-class version of SegNet (Brostow et al. 2008; Badrinarayanan et al. 2015),
and its drives: every frame belongs to one of four drives (video sequences), named by the start
of its file name (0001TP, 0006R0, 0016E5, Seq05VD). `val` is all 0016E5, the drive of 204 of the
367 `train` frames; `camvid_pairs(..., holdout=...)` validates on whole drives instead.

Example:
    pairs, info = camvid_pairs("~/data/camvid", "train")
    len(pairs), info.ignore_label
    val, _ = camvid_pairs("~/data/camvid", "val", holdout="0006R0")
    len(val), camvid_drive(val[0][0])
"""

import os

from keras_fcn._checks import check_choice
from keras_fcn.datasets.base import DatasetInfo
from keras_fcn.datasets.folder import list_file_pairs
from keras_fcn.datasets.groups import HOLDOUT_SPLITS, holdout_split, regex_group

CAMVID_SPLITS = ("train", "val", "test")
# 0001TP_006690.png, 0006R0_f01830.png, 0016E5_07959.png, Seq05VD_f00000.png
CAMVID_DRIVE_PATTERN = r"^(\d{4}[A-Z][A-Z0-9]|Seq\d{2}[A-Z]{2})_"
CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist")
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192), (0, 0, 0))  # the last one is "Unlabelled" (void, id 11)
# Median-frequency balancing weights of classes 0-10 (from the data set's README).
CAMVID_CLASS_WEIGHTS = (0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
                        6.2478, 7.3614)
CAMVID_INFO = DatasetInfo("camvid", 11, CAMVID_CLASSES, CAMVID_PALETTE, ignore_label=11)


_drive_of = regex_group(CAMVID_DRIVE_PATTERN, "drive")


def camvid_drive(path):
    """The drive of a CamVid frame, from its file name.

    Raises:
        ValueError: the name does not start with a drive ("0001TP_", "Seq05VD_", ...), naming
            the file.

    Example:
        >>> camvid_drive("train/0006R0_f01830.png")
        '0006R0'
    """
    return _drive_of(path)


def camvid_pairs(root, split="train", *, holdout=None):
    """Reads the 11-class CamVid (SegNet version): `{split}.txt` of "image label" lines.

    Args:
        root: CamVid folder (train/, trainannot/, val/, valannot/, train.txt, val.txt).
        split: "train" (367 pairs), "val" (101) or "test" (233, when present).
        holdout: drives to validate on ("0006R0", "0006R0,0001TP" or a sequence). With it,
            the `train` and `val` frames are pooled, "val" is the frames of these drives and
            "train" the others (`test` is never pooled).

    Returns:
        (pairs, `CAMVID_INFO`): single-channel masks, ignore label 11.

    Raises:
        ValueError: a frame name without a drive, or an unknown drive (listing the known ones).
        FileNotFoundError: `root` lacks a list file (`check_camvid_root`).

    Example:
        pairs, info = camvid_pairs("~/data/camvid", "val")
        len(pairs), info.num_classes
        len(camvid_pairs("~/data/camvid", "train", holdout="0006R0")[0])
    """
    if holdout is None:
        check_choice("split", split, CAMVID_SPLITS)
        check_camvid_root(root, f"{split}.txt")
        return list_file_pairs(root, f"{split}.txt"), CAMVID_INFO
    check_camvid_root(root, *(f"{name}.txt" for name in HOLDOUT_SPLITS))
    pooled = [pair for name in HOLDOUT_SPLITS for pair in list_file_pairs(root, f"{name}.txt")]
    return holdout_split(pooled, camvid_drive, holdout, split, "drive"), CAMVID_INFO


def check_camvid_root(root, *list_files):
    """Fails unless the folder `root` (--data_dir) holds `list_files`, naming it, what it must
    hold, and the folder meant where one is near: a subfolder holding train.txt (`data/`
    for `data/camvid/`) or the parent of a split folder (`camvid/train`).

    Raises:
        FileNotFoundError: a list file is missing.

    Example:
        check_camvid_root("~/data/camvid", "train.txt", "val.txt")
    """
    folder = os.path.expanduser(os.fspath(root))
    missing = [name for name in list_files if not os.path.isfile(os.path.join(folder, name))]
    if not missing:
        return
    children = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    near = [os.path.join(os.fspath(root), name) for name in children
            if os.path.isfile(os.path.join(folder, name, "train.txt"))]
    parent = os.path.dirname(os.path.normpath(os.fspath(root)))
    if not near and os.path.isfile(os.path.join(os.path.expanduser(parent), "train.txt")):
        near = [parent]
    hint = f" Did you mean --data_dir={near[0]}?" if near else ""
    raise FileNotFoundError(
        f"--data_dir={os.fspath(root)} has no {missing[0]}: expected the CamVid folder "
        f"holding train.txt and val.txt (with train/, trainannot/, val/, valannot/).{hint}")
