"""PASCAL VOC 2012 segmentation, the Semantic Boundaries Dataset (SBD) and the FCN paper's
validation split seg11valid.

Example:
    pairs, info = voc_pairs("~/data/VOCdevkit", "val")
    len(pairs), info.num_classes
"""

import dataclasses
import os

from keras_fcn._checks import check_choice
from keras_fcn.datasets.base import DatasetInfo
from keras_fcn.datasets.common import read_list_file, resource_path
from keras_fcn.labels import IGNORE_LABEL, VOC_CLASSES, voc_palette

VOC_INFO = DatasetInfo("voc2012", 21, VOC_CLASSES, voc_palette(), IGNORE_LABEL)
SBD_INFO = dataclasses.replace(VOC_INFO, name="sbd", mask_format="sbd_mat")
VOC_SPLITS = ("train", "val", "trainval")
SBD_SPLITS = ("train", "val")


def _find_voc_root(root, year="2012"):
    """Accepts VOCdevkit/VOC20xx, VOCdevkit, or the folder that holds VOCdevkit."""
    root = os.path.expanduser(os.fspath(root))
    for candidate in (root, os.path.join(root, f"VOC{year}"),
                      os.path.join(root, "VOCdevkit", f"VOC{year}")):
        if os.path.isdir(os.path.join(candidate, "SegmentationClass")):
            return candidate
    raise FileNotFoundError(
        f"No VOC{year} layout (JPEGImages, SegmentationClass, ImageSets/Segmentation) found "
        f"under '{root}'"
    )


def _voc_pairs_for_ids(voc_root, ids):
    return [(os.path.join(voc_root, "JPEGImages", f"{i}.jpg"),
             os.path.join(voc_root, "SegmentationClass", f"{i}.png")) for i in ids]


def voc_pairs(root, split="train", year="2012"):
    """Reads the PASCAL VOC segmentation split (palette PNG masks, void 255).

    Args:
        root: `VOCdevkit/VOC2012`, `VOCdevkit` or the folder holding `VOCdevkit`.
        split: "train", "val" or "trainval" (ImageSets/Segmentation/{split}.txt).
        year: "2012" (or "2011" etc. for older releases with the same layout).

    Returns:
        (pairs, `VOC_INFO`).

    Example:
        pairs, info = voc_pairs("~/data/VOCdevkit", "val")
        len(pairs), info.num_classes
    """
    check_choice("split", split, VOC_SPLITS)
    voc_root = _find_voc_root(root, year)
    ids = read_list_file(os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"))
    return _voc_pairs_for_ids(voc_root, ids), VOC_INFO


def _find_sbd_root(root):
    """Accepts benchmark_RELEASE/dataset, benchmark_RELEASE, or the folder that holds it."""
    root = os.path.expanduser(os.fspath(root))
    for candidate in (root, os.path.join(root, "dataset"),
                      os.path.join(root, "benchmark_RELEASE", "dataset")):
        if os.path.isdir(os.path.join(candidate, "cls")):
            return candidate
    raise FileNotFoundError(f"No SBD layout (img, cls, train.txt, val.txt) found under '{root}'")


def sbd_pairs(root, split="train"):
    """Reads the Semantic Boundaries Dataset (Hariharan et al. 2011) split.

    Masks are `cls/{id}.mat` files (`GTcls.Segmentation`); read them with
    `mask_format="sbd_mat"` (set by `SBD_INFO.dataset_kwargs()`), which needs scipy.

    Args:
        root: `benchmark_RELEASE/dataset` (or a parent folder).
        split: "train" (8,498 images) or "val" (2,857).

    Returns:
        (pairs, `SBD_INFO`).

    Example:
        pairs, info = sbd_pairs("~/data/benchmark_RELEASE", "train")
        len(pairs), info.mask_format
    """
    check_choice("split", split, SBD_SPLITS)
    sbd_root = _find_sbd_root(root)
    ids = read_list_file(os.path.join(sbd_root, f"{split}.txt"))
    pairs = [(os.path.join(sbd_root, "img", f"{i}.jpg"),
              os.path.join(sbd_root, "cls", f"{i}.mat")) for i in ids]
    return pairs, SBD_INFO


def seg11valid_ids():
    """Returns the 736 seg11valid ids: VOC2011 segmentation val images not in SBD train.

    The list is the one published with the reference FCN code (fcn.berkeleyvision.org,
    `data/pascal/seg11valid.txt`), shipped in `keras_fcn/datasets/resources/seg11valid.txt`.

    Example:
        >>> len(seg11valid_ids())
        736
    """
    return read_list_file(resource_path("seg11valid.txt"))


def seg11valid_pairs(root):
    """Reads the paper's validation split from a VOC2012 (or VOC2011) folder.

    All seg11valid images are in VOC2011 val, and VOC2012 includes VOC2011, so either works.

    Args:
        root: `VOCdevkit/VOC2012`, `VOCdevkit` or the folder holding `VOCdevkit`.

    Returns:
        (736 pairs, `VOC_INFO`).

    Example:
        pairs, info = seg11valid_pairs("~/data/VOCdevkit")
        len(pairs)
    """
    root = os.path.expanduser(os.fspath(root))
    try:
        voc_root = _find_voc_root(root, "2012")
    except FileNotFoundError:
        voc_root = _find_voc_root(root, "2011")
    return _voc_pairs_for_ids(voc_root, seg11valid_ids()), VOC_INFO
