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


VOC_LAYOUT = "SegmentationClass, JPEGImages, ImageSets/Segmentation"
SBD_LAYOUT = "cls, img, train.txt, val.txt"


def _voc_candidates(root, year):
    return (root, os.path.join(root, f"VOC{year}"), os.path.join(root, "VOCdevkit", f"VOC{year}"))


def _sbd_candidates(root):
    return (root, os.path.join(root, "dataset"), os.path.join(root, "benchmark_RELEASE", "dataset"))


def _layout_root(root, candidates, marker):
    """The first of `candidates` (of `root`) holding the folder `marker`, or None."""
    root = os.path.expanduser(os.fspath(root))
    return next((c for c in candidates(root) if os.path.isdir(os.path.join(c, marker))), None)


def _no_layout(what, layout, root, flag, candidates):
    root = os.path.expanduser(os.fspath(root))
    where = f"{flag}='{root}'" if flag else f"'{root}'"
    looked = ", ".join(f"'{c}'" for c in candidates)
    return FileNotFoundError(f"No {what} layout ({layout}) found under {where}: looked in "
                             f"{looked}")


def _find_voc_root(root, year="2012", flag=None, years=None):
    """Accepts VOCdevkit/VOC20xx, VOCdevkit, or the folder that holds VOCdevkit (of the first
    of `years` found, default `year`); `flag` names the folder's flag in the error."""
    years = tuple(years or (year,))
    for each in years:
        found = _layout_root(root, lambda r, y=each: _voc_candidates(r, y), "SegmentationClass")
        if found:
            return found
    expanded = os.path.expanduser(os.fspath(root))
    looked = [c for each in years for c in _voc_candidates(expanded, each)]
    raise _no_layout(" or ".join(f"VOC{each}" for each in years), VOC_LAYOUT, root, flag,
                     dict.fromkeys(looked))


def is_voc_folder(root):
    """Whether `root` holds a VOC2012 or VOC2011 layout (as `voc_pairs` looks for it)."""
    return bool(root) and any(
        _layout_root(root, lambda r, y=y: _voc_candidates(r, y), "SegmentationClass")
        for y in ("2012", "2011"))


def is_sbd_folder(root):
    """Whether `root` holds an SBD layout (as `sbd_pairs` looks for it)."""
    return bool(root) and _layout_root(root, _sbd_candidates, "cls") is not None


def folder_swap_hint(dataset, data_dir, val_data_dir=None):
    """A sentence for an error about the folders of --dataset=voc or sbd when the folders
    given look like another's: --data_dir and --val_data_dir swapped (sbd), or a VOC folder
    for sbd and an SBD one for voc; None otherwise.

    Example:
        folder_swap_hint("sbd", "data/VOCdevkit", "data/benchmark_RELEASE")
        # '--data_dir and --val_data_dir look swapped: ...'
    """
    sbd_dir, voc_dir = is_sbd_folder(data_dir), is_voc_folder(data_dir)
    if dataset == "sbd" and not sbd_dir and is_sbd_folder(val_data_dir) and voc_dir:
        return (f"--data_dir and --val_data_dir look swapped: --data_dir takes the SBD folder "
                f"(benchmark_RELEASE, training) and --val_data_dir the VOC one (VOCdevkit, "
                f"seg11valid validation); pass --data_dir='{val_data_dir}' "
                f"--val_data_dir='{data_dir}'.")
    if dataset == "sbd" and not sbd_dir and voc_dir:
        return (f"'{data_dir}' holds a VOC layout: --data_dir of --dataset=sbd is the SBD "
                "folder (benchmark_RELEASE); a VOC folder goes to --val_data_dir (seg11valid "
                "validation), or train on VOC with --dataset=voc.")
    if dataset == "voc" and not voc_dir and sbd_dir:
        return (f"'{data_dir}' holds an SBD layout: train on it with --dataset=sbd "
                "(--val_data_dir=<VOCdevkit> for seg11valid validation).")
    return None


def _voc_pairs_for_ids(voc_root, ids):
    return [(os.path.join(voc_root, "JPEGImages", f"{i}.jpg"),
             os.path.join(voc_root, "SegmentationClass", f"{i}.png")) for i in ids]


def voc_pairs(root, split="train", year="2012", flag=None):
    """Reads the PASCAL VOC segmentation split (palette PNG masks, void 255).

    Args:
        root: `VOCdevkit/VOC2012`, `VOCdevkit` or the folder holding `VOCdevkit`.
        split: "train", "val" or "trainval" (ImageSets/Segmentation/{split}.txt), or
            "seg11valid" (`seg11valid_pairs`: VOC2012 or VOC2011, every file checked).
        year: "2012" (or "2011" etc. for older releases with the same layout).
        flag: the flag that gave `root`, named when no VOC layout is found under it.

    Returns:
        (pairs, `VOC_INFO`).

    Example:
        pairs, info = voc_pairs("~/data/VOCdevkit", "val")
        len(pairs), info.num_classes
    """
    check_choice("split", split, VOC_SPLITS + ("seg11valid",))
    if split == "seg11valid":
        return seg11valid_pairs(root, flag=flag, check_files=True)
    voc_root = _find_voc_root(root, year, flag)
    ids = read_list_file(os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"))
    return _voc_pairs_for_ids(voc_root, ids), VOC_INFO


def _find_sbd_root(root, flag=None):
    """Accepts benchmark_RELEASE/dataset, benchmark_RELEASE, or the folder that holds it."""
    found = _layout_root(root, _sbd_candidates, "cls")
    if found:
        return found
    expanded = os.path.expanduser(os.fspath(root))
    raise _no_layout("SBD", SBD_LAYOUT, root, flag, _sbd_candidates(expanded))


def sbd_pairs(root, split="train", flag=None):
    """Reads the Semantic Boundaries Dataset (Hariharan et al. 2011) split.

    Masks are `cls/{id}.mat` files (`GTcls.Segmentation`); read them with
    `mask_format="sbd_mat"` (set by `SBD_INFO.dataset_kwargs()`), which needs scipy.

    Args:
        root: `benchmark_RELEASE/dataset` (or a parent folder).
        split: "train" (8,498 images) or "val" (2,857).
        flag: the flag that gave `root`, named when no SBD layout is found under it.

    Returns:
        (pairs, `SBD_INFO`).

    Example:
        pairs, info = sbd_pairs("~/data/benchmark_RELEASE", "train")
        len(pairs), info.mask_format
    """
    check_choice("split", split, SBD_SPLITS)
    sbd_root = _find_sbd_root(root, flag)
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


def seg11valid_pairs(root, flag=None, check_files=False):
    """Reads the paper's validation split from a VOC2012 (or VOC2011) folder.

    All seg11valid images are in VOC2011 val, and VOC2012 includes VOC2011, so either works.

    Args:
        root: `VOCdevkit/VOC2012`, `VOCdevkit` or the folder holding `VOCdevkit`.
        flag: the flag that gave `root` (e.g. "--val_data_dir"), named in the errors.
        check_files: refuse a folder that lacks a seg11valid image or mask (a partial tree).

    Returns:
        (736 pairs, `VOC_INFO`).

    Raises:
        FileNotFoundError: no VOC2012 or VOC2011 layout under `root`, or (`check_files`) a
            seg11valid file missing, naming it, how many are missing and `flag`.

    Example:
        pairs, info = seg11valid_pairs("~/data/VOCdevkit")
        len(pairs)
    """
    voc_root = _find_voc_root(root, flag=flag, years=("2012", "2011"))
    pairs = _voc_pairs_for_ids(voc_root, seg11valid_ids())
    missing = [path for pair in pairs for path in pair
               if check_files and not os.path.isfile(path)]
    if missing:
        where = f"{flag}='{root}'" if flag else f"'{root}'"
        raise FileNotFoundError(
            f"seg11valid file '{missing[0]}' does not exist ({len(missing)} of the "
            f"{2 * len(pairs)} images and masks are missing): seg11valid, the paper's "
            f"validation split, is the bundled list of {len(pairs)} VOC2011 val ids "
            f"(keras_fcn/datasets/resources/seg11valid.txt), read from the VOC folder "
            f"{where} ('{voc_root}'). Pass a complete VOC2012 (or VOC2011) release there.")
    return pairs, VOC_INFO
