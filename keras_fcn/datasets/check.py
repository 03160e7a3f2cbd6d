"""`check(name, data_dir)`: counts and problems of a local copy of a supported data set.

Example:
    >>> from keras_fcn import datasets
    >>> reports = datasets.check("camvid", "~/data/camvid")  # doctest: +SKIP
    camvid train: 367 examples, all good
    camvid val: 101 examples, all good
    camvid test: 233 examples, all good
"""

import contextlib
import logging
import os

from keras_fcn.data.validate import ValidationReport, validate_pairs
from keras_fcn.datasets import nyud, siftflow
from keras_fcn.datasets.census import check_orientations, check_training_labels
from keras_fcn.datasets.folder import subfolders_note
from keras_fcn.datasets.loader import file_pairs
from keras_fcn.datasets.nyud.layout import size_problem
from keras_fcn.labels import IGNORE_LABEL

# The splits `check` looks at when none are given.
CHECK_SPLITS = {
    "shapes": ("train", "val"),
    "camvid": ("train", "val", "test"),
    "voc": ("train", "val"),
    "sbd": ("train", "val"),
    "folder": ("train", "val"),
    "nyud": ("train", "val", "test"),
    "siftflow": ("trainval", "test"),
}
# Default splits a copy may lack: `check` skips them when absent, printing so.
OPTIONAL_SPLITS = {"camvid": ("test",)}


def _nyud_problem(root, image_id):
    """Reads every file of one NYUDv2 image; returns None or the problem."""
    label = nyud.read_label(root, image_id)
    arrays = {"rgb": nyud.read_rgb(root, image_id), "depth": nyud.read_depth(root, image_id)}
    if os.path.isdir(os.path.join(root, "data", "hha")):
        arrays["hha"] = nyud.read_hha(root, image_id)
    return size_problem(image_id, arrays, label)


def _siftflow_problem(root, image_id):
    siftflow.load_example(root, image_id)  # raises on missing, damaged or mismatched files
    return None


def _check_ids(ids, problem):
    """`ValidationReport` of examples read by id: `problem(id)` returns or raises the problem."""
    good, bad = [], []
    for image_id in ids:
        try:
            message = problem(image_id)
        except (OSError, ValueError) as error:
            message = str(error)
        if message:
            bad.append((image_id, message))
        else:
            good.append(image_id)
    return ValidationReport(good=good, bad=bad)


def check_split(name, data_dir, split, *, num_classes=None, ignore_label=IGNORE_LABEL,
                decode_images=True):
    """Checks one split of a local copy: every file exists, decodes, and has valid labels.

    Args:
        name: "shapes" (a copy written by `make_shapes_dataset`), "camvid", "voc", "sbd",
            "folder", "nyud" or "siftflow".
        data_dir: the data set's folder.
        split: the split to check.
        num_classes, ignore_label: for "folder" (see `load_split`).
        decode_images: decode every image (False reads headers only: faster, misses damaged
            JPEG data).

    Returns:
        `ValidationReport`: `.good` pairs (or ids) and `.bad` (item, message) list.

    Example:
        check_split("camvid", "~/data/camvid", "val").num_bad
    """
    return _check_split(name, data_dir, split, num_classes, ignore_label, decode_images)[0]


def _check_split(name, data_dir, split, num_classes, ignore_label, decode_images):
    """`check_split`'s report and the split's `DatasetInfo` (None for the id-listed sets),
    listing the split's files once."""
    data_dir = os.path.expanduser(os.fspath(data_dir))
    if name == "nyud":
        return _check_ids(nyud.nyud_ids(data_dir, split),
                          lambda image_id: _nyud_problem(data_dir, image_id)), None
    if name == "siftflow":
        return _check_ids(siftflow.siftflow_ids(data_dir, split),
                          lambda image_id: _siftflow_problem(data_dir, image_id)), None
    pairs, info = file_pairs(name, split, data_dir, None, num_classes, ignore_label)
    kwargs = info.dataset_kwargs()
    with _quiet(validate_pairs.__module__):  # its "Skipping ..." warning is a fit's; none here
        return validate_pairs(pairs, num_classes=kwargs["num_classes"],
                              ignore_label=kwargs["ignore_label"],
                              mask_format=kwargs["mask_format"], palette=kwargs["palette"],
                              decode_images=decode_images, skip_bad=True, verbose=False), info


@contextlib.contextmanager
def _quiet(logger_name):
    """Within the block, the logger ``logger_name`` logs no warnings."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check(name, data_dir, splits=None, *, num_classes=None, ignore_label=IGNORE_LABEL,
          decode_images=True, max_items=10):
    """Checks a local copy of a data set, prints counts and problems, returns the reports.

    A default split the copy may lack (CamVid's `test`), when absent, is printed and skipped.
    Any other split that cannot be checked (missing, unlisted, an unpaired file, a lossy mask
    format) is printed and reported with no pairs and the reason in its `.problems`: nothing
    is raised, and no requested split is left out of the result.

    Args:
        name: one of `CHECK_SPLITS` ("shapes", "camvid", "voc", "sbd", "folder", "nyud",
            "siftflow").
        data_dir: the data set's folder.
        splits: splits to check (default `CHECK_SPLITS[name]`).
        num_classes, ignore_label: for "folder".
        decode_images: see `check_split`.
        max_items: bad examples printed per split.

    Returns:
        dict split -> `ValidationReport`, for every split checked or not checkable (see above).

    Example:
        >>> reports = check("nyud", "data/nyud")  # doctest: +SKIP
        nyud train: 381 examples, all good
        nyud val: 414 examples, all good
        nyud test: 654 examples, all good
    """
    if name not in CHECK_SPLITS:
        raise ValueError(f"Unknown dataset. Expected one of {tuple(CHECK_SPLITS)}. "
                         f"Received: name={name!r}")
    reports = {}
    for split in splits or CHECK_SPLITS[name]:
        try:
            report, info = _check_split(name, data_dir, split, num_classes, ignore_label,
                                        decode_images)
        except (OSError, ValueError) as error:
            print(f"{name} {split}: not checked: {error}")
            if not (splits is None and isinstance(error, FileNotFoundError)
                    and split in OPTIONAL_SPLITS.get(name, ())):
                reports[split] = ValidationReport(good=[], bad=[],
                                                  problems=[f"not checked: {error}"])
            continue
        total = len(report.good) + report.num_bad
        problems = report.problems = _split_problems(name, data_dir, split, report, info)
        if report.num_bad:
            listed = report.summary(max_items).split("\n", 1)[1]  # after "n bad pair(s) of m:"
            print(f"{name} {split}: {total} examples, {report.num_bad} bad pair(s) (training "
                  f"and evaluation would stop at the first; fix or remove them):\n{listed}")
        else:
            print(f"{name} {split}: {total} examples" + ("" if problems else ", all good"))
        for problem in problems:
            print(f"  training would stop: {problem}")
        reports[split] = report
    return reports


def _split_problems(name, data_dir, split, report, info):
    """What stops a run on the split as a whole, though each pair is good: no pair at all,
    and for "folder" data an EXIF-turned photo or training masks without a class but 0
    (0/255 binary masks), as `keras_fcn.datasets.load_split` checks."""
    if not report.good and not report.num_bad:
        note = (subfolders_note(*(os.path.join(data_dir, split, sub) for sub in ("images",
                                                                              "masks")))
                if name == "folder" else "")
        return [f"no image/mask pairs; expected at least one{note}"]
    if name != "folder" or not report.good:
        return []
    problems = []
    checks = [lambda: check_orientations(report.good)]
    if split == "train":
        checks.append(lambda: check_training_labels(report.good, info))
    for run_check in checks:
        try:
            run_check()
        except ValueError as error:
            problems.append(str(error))
    return problems

