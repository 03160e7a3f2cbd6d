"""Splits that hold out whole groups of frames (the drives of a street data set, the videos of
a folder), so that validation measures frames a model has never seen the like of.

Frames of one video, seconds apart, are near copies: validating on frames of a training video
measures memory, not generalization. A group is read from each image's file name, by a regex
(`regex_group`) or by a data set's own rule (`keras_fcn.datasets.camvid_drive`).

Example:
    >>> group = regex_group(r"^(\\w+?)_\\d+")
    >>> pairs = [("a/cam1_001.png", "m/cam1_001.png"), ("a/cam2_001.png", "m/cam2_001.png")]
    >>> train, val = split_by_group(pairs, group, holdout="cam2")
    >>> [p[0] for p in val]
    ['a/cam2_001.png']
"""

import collections
import os
import re

HOLDOUT_SPLITS = ("train", "val")


def regex_group(pattern, what="group"):
    """A function `path -> group` reading the group from a file name with a regex.

    The regex is searched in the file name (not the folders); its first capturing group, or
    the whole match when it has none, is the group.

    Args:
        pattern: regex (string or compiled).
        what: name of a group in error messages ("drive", "video", ...).

    Raises:
        ValueError: the regex does not compile (at once), or a file name does not match it
            (when the function is called), naming the regex and the file.

    Example:
        >>> regex_group(r"^[^_]+")("data/images/street3_0042.png")
        'street3'
    """
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"group_by must be a regex on file names ({error}). "
                         f"Received: group_by={pattern!r}") from None

    def group_of(path):
        name = os.path.basename(os.fspath(path))
        match = regex.search(name)
        if match is None:
            raise ValueError(f"File name '{name}' has no {what}: it does not match the regex "
                             f"{regex.pattern!r} (file '{path}')")
        return match.group(1) if regex.groups else match.group(0)

    return group_of


def parse_holdout(holdout):
    """The held-out groups as a tuple: from a comma-separated string ("0006R0,0001TP", as a
    command-line flag gives it) or a sequence of names.

    Example:
        >>> parse_holdout("0006R0, 0001TP")
        ('0006R0', '0001TP')
    """
    if holdout is None:
        return ()
    names = holdout.split(",") if isinstance(holdout, str) else list(holdout)
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"holdout must be group names (strings). Received: holdout={holdout!r}")
    return tuple(dict.fromkeys(name.strip() for name in names if name.strip()))


def group_counts(pairs, group_fn):
    """Number of (image, mask) pairs per group, sorted by group name.

    Example:
        group_counts(pairs, camvid_drive)
    """
    return dict(sorted(collections.Counter(group_fn(image) for image, _ in pairs).items()))


def split_by_group(pairs, group_fn, holdout, what="group"):
    """Splits pairs by the group of their image: the held-out groups' pairs are validation,
    the others training (both in the order of `pairs`).

    Args:
        pairs: (image path, mask path) pairs.
        group_fn: `image path -> group`, e.g. `regex_group(...)` or `camvid_drive`.
        holdout: held-out group names (a sequence, or a comma-separated string).
        what: name of a group in error messages.

    Returns:
        (train pairs, val pairs).

    Raises:
        ValueError: no group given, a group that no pair has (the message lists the known
            groups and their sizes), or every group held out (nothing left to train on).

    Example:
        train, val = split_by_group(pairs, camvid_drive, ("0006R0",))
        {camvid_drive(image) for image, _ in val}
    """
    held_out = parse_holdout(holdout)
    groups = [group_fn(image) for image, _ in pairs]
    counts = collections.Counter(groups)
    known = ", ".join(f"{name} ({count})" for name, count in sorted(counts.items()))
    if not held_out:
        raise ValueError(f"holdout must name at least one {what}. Known {what}s (frames): "
                         f"{known}. Received: holdout={holdout!r}")
    unknown = [name for name in held_out if name not in counts]
    if unknown:
        raise ValueError(f"Unknown {what}(s) {unknown} in holdout. Known {what}s (frames): "
                         f"{known}. Received: holdout={holdout!r}")
    if set(held_out) >= set(counts):
        raise ValueError(f"holdout names every {what} ({known}): nothing is left to train on. "
                         f"Received: holdout={holdout!r}")
    train = [pair for pair, group in zip(pairs, groups) if group not in held_out]
    val = [pair for pair, group in zip(pairs, groups) if group in held_out]
    return train, val


def holdout_split(pairs, group_fn, holdout, split, what="group"):
    """One side of `split_by_group`: "train" (the other groups) or "val" (the held-out ones).

    Example:
        val = holdout_split(pairs, camvid_drive, "0006R0", "val")
    """
    if split not in HOLDOUT_SPLITS:
        raise ValueError(f"With a holdout, split must be one of {HOLDOUT_SPLITS}. "
                         f"Received: split={split!r}")
    train, val = split_by_group(pairs, group_fn, holdout, what)
    return train if split == "train" else val


def group_folds(pairs, group_fn):
    """Leave-one-group-out folds: each group in turn is validation, the others training.

    Every pair is validation in exactly one fold.

    Yields:
        (held-out group, train pairs, val pairs), groups in sorted order.

    Example:
        for drive, train, val in group_folds(pairs, camvid_drive):
            print(drive, len(train), len(val))
    """
    for group in group_counts(pairs, group_fn):
        yield (group, *split_by_group(pairs, group_fn, (group,)))
