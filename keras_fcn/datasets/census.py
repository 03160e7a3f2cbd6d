"""What the training masks of one's own data hold, before a run trains on them.

`check_training_labels(pairs, info)` counts each class's pixels in the masks of a training
split (all of them, or an even sample of `MAX_MASKS`) and stops a run whose masks hold nothing
to learn: binary masks saved as 0 and 255 mark their foreground with 255, the usual ignore
label, and a run on them trained on the background alone and reported a mean IU of 100%.
Classes no mask holds are named in a warning (the model cannot learn them; their IU is n/a).

`check_orientations(pairs)` refuses photos with an EXIF orientation: the pipelines read their
stored pixels, `tools/predict.py` and viewers the turned ones, and a mask matches one of the
two only (a walkthrough's phone photo trained rotated against its upright mask, silently).

Example:
    check_training_labels(pairs, info)  # ValueError for 0/255 masks of 2 classes
"""

import logging

import numpy as np

from keras_fcn.data.masks import map_with_progress, orientation_problem, read_mask

logger = logging.getLogger(__name__)

MAX_MASKS = 400  # masks read at most (an even sample of larger splits): ~1 s for CamVid's


def _sample(pairs, max_masks):
    if len(pairs) <= max_masks:
        return list(pairs)
    return [pairs[i] for i in np.linspace(0, len(pairs) - 1, max_masks).round().astype(int)]


def class_census(pairs, info, max_masks=MAX_MASKS, num_workers=4):
    """Pixels of each class and of the ignore label in the masks of `pairs` (all of them, or
    an even sample of `max_masks`), read as the pipelines read them (`read_mask`). Values
    outside the classes are not counted (the pipelines refuse them, naming the file).

    Returns:
        (pixels per class id (num_classes,) int64, ignore-label pixels, masks read).

    Example:
        counts, void, read = class_census(pairs, info)
    """
    sample = _sample(pairs, max_masks)
    palette = info.palette if info.mask_format == "rgb" else None

    def count(pair):
        mask = read_mask(pair[1], info.mask_format, palette, info.ignore_label)
        values = np.bincount(mask.ravel(), minlength=info.num_classes)
        void = int(values[info.ignore_label]) if info.ignore_label < len(values) else 0
        return values[:info.num_classes].astype(np.int64), void

    counts, void = np.zeros(info.num_classes, np.int64), 0
    for values, ignored in map_with_progress(count, sample, num_workers, verbose=False):
        counts += values
        void += ignored
    return counts, void, len(sample)


def _names(info, ids):
    names = info.class_names or [str(i) for i in range(info.num_classes)]
    return ", ".join(f"{names[i]!r} (id {i})" for i in ids)


def check_training_labels(pairs, info, max_masks=MAX_MASKS):
    """Stops a run whose training masks hold no pixel of any class but class 0; warns of the
    classes that none of them holds.

    Args:
        pairs: the (image, mask) paths of the training split.
        info: its `DatasetInfo` (classes, ignore label, mask format, palette).
        max_masks: masks read at most (an even sample of a larger split: then the finding is
            a warning, since a mask outside the sample may hold the classes).

    Raises:
        ValueError: every training mask was read and none holds a pixel of a class other
            than 0 (with 0/255 binary masks and ignore label 255, the message says to save
            the foreground as 1).

    Example:
        check_training_labels(pairs, info)
    """
    counts, void, read = class_census(pairs, info, max_masks)
    sample = "" if read == len(pairs) else f" (an even sample of {read} of {len(pairs)})"
    if info.num_classes > 1 and not counts[1:].any():
        voided = f" and the ignore label {info.ignore_label}" if void else ""
        hint = (" Binary masks saved as 0 and 255 mark the foreground with 255, the ignore "
                "label: save the foreground as 1 (mask // 255)." if void
                and info.ignore_label == 255 else "")
        message = (f"The {len(pairs)} training masks{sample} hold no pixel of any class but "
                   f"{_names(info, [0])}{voided}: there is nothing to learn.{hint}")
        if not sample:
            raise ValueError(message)
        logger.warning(message)
        return counts
    absent = [i for i in range(info.num_classes) if counts[i] == 0]
    if absent:
        logger.warning(f"No training mask{sample} holds class(es) {_names(info, absent)}: the "
                       "model cannot learn them, and their IU is n/a (left out of the mean IU).")
    return counts


def check_orientations(pairs, num_workers=4):
    """Refuses image files with an EXIF orientation (`orientation_problem`), naming the first
    and counting the others; reads each image's header only.

    Raises:
        ValueError: an image of `pairs` has an EXIF orientation of 2 to 8.

    Example:
        check_orientations(pairs)
    """
    problems = [p for p in map_with_progress(orientation_problem, [pair[0] for pair in pairs],
                                             num_workers, verbose=False) if p]
    if problems:
        more = f" ({len(problems) - 1} more images have one)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more)
