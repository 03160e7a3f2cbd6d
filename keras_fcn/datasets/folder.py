r"""Generic data sets: list files of "image mask" lines, and image/mask folders matched by
file stem; splits that hold out whole groups of frames (videos) named by a regex.

Example:
    pairs = folder_pairs("data/images", "data/masks")
    pairs = list_file_pairs("/data/camvid", "train.txt")
    val = split_pairs("data/mine", "val", group_by=r"^([a-z]+\d+)_", holdout="street3")
"""

import logging
import os

from keras_fcn._checks import check_choice
from keras_fcn.datasets.common import read_list_file
from keras_fcn.datasets.groups import HOLDOUT_SPLITS, holdout_split, regex_group
from keras_fcn.io import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

MASK_EXTENSIONS = (".png", ".bmp", ".mat")


def list_file_pairs(root, list_file):
    """Reads a list file of "image mask" lines, paths relative to `root`; a line with a tab
    is "image<TAB>mask", whose paths may hold spaces.

    Args:
        root: folder the paths are relative to.
        list_file: list file path (relative to `root` or absolute).

    Returns:
        List of (image path, mask path).

    Example:
        list_file_pairs("/data/camvid", "train.txt")[0]
    """
    root = os.path.expanduser(os.fspath(root))
    path = os.path.join(root, list_file)
    pairs = []
    for number, line in enumerate(read_list_file(path), start=1):
        fields = [f.strip() for f in line.split("\t") if f.strip()] if "\t" in line \
            else line.split()
        if len(fields) != 2:
            found = ("it has one path: its mask is missing" if len(fields) == 1 else
                     f"it has {len(fields)} fields; separate image and mask by a tab when a "
                     "path holds spaces")
            raise ValueError(f"Line {number} of '{path}' must be 'image mask' (2 paths); "
                             f"{found}. Received: {line!r}")
        pairs.append(tuple(os.path.join(root, field) for field in fields))
    return pairs


def _files_by_stem(directory, extensions):
    """{stem: path}; two files of one stem (a.jpg and a.png) are a ValueError naming both."""
    files = {}
    for name in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(directory, name)
        if ext.lower() in extensions and os.path.isfile(path):  # not a folder named "x.png"
            if stem in files:
                raise ValueError(
                    f"'{files[stem]}' and '{path}' have the same stem {stem!r}: which one to "
                    "pair is ambiguous. Remove or rename one of them.")
            files[stem] = path
    return files


def _unread_masks_note(masks_dir, stems, mask_extensions):
    """Names the files of `masks_dir` of the unpaired images' `stems` that are not read as
    masks for their extension (a lossy `a.jpg` mask), or ""."""
    unread = sorted(os.path.join(masks_dir, name) for name in os.listdir(masks_dir)
                    if os.path.splitext(name)[0] in stems)
    if not unread:
        return ""
    return (f". Not read as masks (masks must be {', '.join(mask_extensions)} files; JPEG is "
            f"lossy, its values near edges are not class ids): "
            + ", ".join(f"'{p}'" for p in unread[:10]) + (" ..." if len(unread) > 10 else ""))


def subfolders_note(*directories):
    """Names the subfolders of ``directories`` (not read: pairs are matched in each folder
    itself), or "".

    Example:
        logger.warning("Not read" + subfolders_note("data/train/images", "data/train/masks"))
    """
    found = sorted(os.path.join(directory, name) for directory in directories
                   if os.path.isdir(directory) for name in os.listdir(directory)
                   if os.path.isdir(os.path.join(directory, name)))
    if not found:
        return ""
    return (": subfolders are not read (" + ", ".join(f"'{p}'" for p in found[:5])
            + (" ..." if len(found) > 5 else "") + "); move their files into the folder "
            "itself, or list the pairs in a list file (docs/data.md)")


def folder_pairs(images_dir, masks_dir, *, on_unpaired="error", image_extensions=IMAGE_EXTENSIONS,
                 mask_extensions=MASK_EXTENSIONS):
    """Pairs images and masks of two folders by file stem (`a.jpg` <-> `a.png`).

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks.
        on_unpaired: "error" raises `ValueError` naming the unpaired files, "warn" logs them
            and returns the matched pairs.
        image_extensions, mask_extensions: file extensions considered (lower case).

    Returns:
        List of (image path, mask path), sorted by stem.

    Raises:
        ValueError: unpaired files (with on_unpaired="error"), or two files of one folder
            with the same stem (a.jpg and a.png; always an error: the pairing is ambiguous).
        FileNotFoundError: a folder does not exist.

    Example:
        folder_pairs("data/images", "data/masks")
    """
    check_choice("on_unpaired", on_unpaired, ("error", "warn"))
    for directory in (images_dir, masks_dir):
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Folder '{directory}' does not exist")
    images = _files_by_stem(images_dir, image_extensions)
    masks = _files_by_stem(masks_dir, mask_extensions)
    note = subfolders_note(images_dir, masks_dir)
    if note:  # their frames were left out without a word
        logger.warning("Some files of '%s' and '%s' are left out%s", images_dir, masks_dir, note)
    unpaired = sorted([images[s] for s in images.keys() - masks.keys()]
                      + [masks[s] for s in masks.keys() - images.keys()])
    if unpaired:
        message = (f"{len(unpaired)} unpaired file(s) (no image or mask with the same stem): "
                   + ", ".join(f"'{p}'" for p in unpaired[:10])
                   + (" ..." if len(unpaired) > 10 else "")
                   + _unread_masks_note(masks_dir, images.keys() - masks.keys(),
                                        mask_extensions))
        if on_unpaired == "error":
            raise ValueError(message)
        logger.warning(message)
    return [(images[s], masks[s]) for s in sorted(images.keys() & masks.keys())]


def _has_split(root, split):
    return (os.path.isfile(os.path.join(root, f"{split}.txt"))
            or os.path.isdir(os.path.join(root, split, "images")))


def _missing_split(root, split):
    """The FileNotFoundError for a `split` that `root` lacks: what the folder must hold."""
    hint = ""
    if os.path.basename(os.path.normpath(root)) in HOLDOUT_SPLITS + ("test",) \
            or os.path.isdir(os.path.join(root, "images")):
        hint = f" {root!r} looks like one split: pass the folder above it."
    elif split != "train" and _has_split(root, "train"):
        hint = (f" Without a {split}/ folder, --holdout with --group_by validates on groups "
                "of train/ (docs/camvid.md).")
    what = (f"has no {split!r} split: neither '{split}.txt' nor '{split}/images/' is in it"
            if os.path.isdir(root) else "does not exist")
    return FileNotFoundError(
        f"The data folder {root!r} {what}. The data folder (--data_dir) must hold train/ and val/, "
        "each with images/ and masks/ (or train.txt and val.txt of 'image mask' lines; "
        f"docs/data.md).{hint}")


def _read_split(root, split):
    if os.path.isfile(os.path.join(root, f"{split}.txt")):
        return list_file_pairs(root, f"{split}.txt")
    if not os.path.isdir(os.path.join(root, split, "images")):
        raise _missing_split(root, split)
    return folder_pairs(os.path.join(root, split, "images"), os.path.join(root, split, "masks"))


def split_pairs(root, split, *, group_by=None, holdout=None):
    r"""Pairs of one split of a folder: `{split}.txt` of "image mask" lines when present,
    else `{split}/images` and `{split}/masks` matched by file stem.

    Args:
        root: the data set's folder.
        split: split name ("train", "val", ...).
        group_by: with `holdout`, a regex on the image file names whose first group (or whole
            match) is the group (video, drive, camera) of a frame, e.g. r"^(.+)_\d+$".
        holdout: groups to validate on (a sequence or a comma-separated string). With it, the
            `train` split and the `val` split (when present) are pooled, "val" is the frames of
            these groups and "train" the others.

    Raises:
        ValueError: `group_by` without `holdout` or the reverse, a file name the regex does not
            match, or an unknown group (listing the known ones).

    Example:
        split_pairs("data/mine", "train")[0]
        split_pairs("data/mine", "val", group_by=r"^[^_]+", holdout="street3")[0]
    """
    root = os.path.expanduser(os.fspath(root))
    if (group_by is None) != (holdout is None):
        raise ValueError(f"group_by and holdout go together (the regex naming each frame's "
                         f"group, and the groups to validate on). Received: group_by="
                         f"{group_by!r}, holdout={holdout!r}")
    if holdout is None:
        return _read_split(root, split)
    pooled = [pair for name in HOLDOUT_SPLITS if name == "train" or _has_split(root, name)
              for pair in _read_split(root, name)]
    return holdout_split(pooled, regex_group(group_by), holdout, split)
