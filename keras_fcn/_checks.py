"""Argument checks shared by the package: errors name the argument and the received value."""

import math
import numbers

import numpy as np


def check_positive_int(name, value, allow_none=False):
    """Returns ``value`` as an int, or raises ``ValueError`` naming it.

    Example:
        >>> check_positive_int("num_classes", 0)
        Traceback (most recent call last):
        ValueError: `num_classes` must be a positive integer. Received: num_classes=0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        accepted = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"`{name}` must be {accepted}. Received: {name}={value!r}")
    return int(value)


def is_positive_int(value):
    """Whether ``value`` is a Python or NumPy integer (not a bool) above 0.

    Example:
        >>> is_positive_int(np.int64(3)), is_positive_int(True), is_positive_int(2.0)
        (True, False, False)
    """
    return bool(isinstance(value, (int, np.integer))
                and not isinstance(value, (bool, np.bool_)) and value > 0)


def check_choice(name, value, allowed):
    """Returns ``value`` if it is one of ``allowed``, else raises ``ValueError`` naming it."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {tuple(allowed)}. Received: {name}={value!r}")
    return value


def check_class_ids(values, num_classes, ignore_label, what="label"):
    """Raises ``ValueError`` naming the first value of ``values`` (an integer numpy array,
    void already removed) outside ``[0, num_classes)``."""
    bad = (values < 0) | (values >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"Every {what} must be in [0, {num_classes}) (void: ignore_label={ignore_label}). "
            f"Received a {what} value: {int(values[bad][0])}")


def as_class_ids(values, what="label"):
    """``values`` as an int64 numpy array of class ids; float arrays must hold whole numbers
    (``astype`` would truncate 0.6 to class 0 silently).

    Example:
        >>> as_class_ids(np.array([0.6, 1.0]))
        Traceback (most recent call last):
        ValueError: Every label must be a whole class id. Received a label value: 0.6
    """
    values = np.asarray(values)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise ValueError(f"Every {what} must be a whole class id. "
                             f"Received a {what} value: {values[bad].flat[0]}")
    elif values.dtype.kind not in "biu":
        raise ValueError(f"{what.capitalize()}s must be an integer array of class ids. "
                         f"Received dtype {values.dtype}")
    elif values.dtype.kind == "u" and values.dtype.itemsize == 8 and values.size \
            and values.max() > np.iinfo("int64").max:
        raise ValueError(f"Every {what} must be a class id. Received a {what} value: "
                         f"{values.max()}")
    return values.astype("int64")


def as_size(name, value):
    """``value`` (an int or a pair) as a (height, width) pair of positive ints, or None.

    Example:
        >>> as_size("crop_size", 8), as_size("crop_size", [6, 8])
        ((8, 8), (6, 8))
    """
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        pair = tuple(pair)
        ok = len(pair) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
            for v in pair)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be a positive int or a (height, width) pair of "
                         f"positive ints. Received: {name}={value!r}")
    return tuple(int(v) for v in pair)


UNSET_TEXT = ("", "none", "None")  # what a text value says for "unset"


def size_from_text(text, name="size"):
    """``'H,W'``, ``'HxW'`` or ``'S'`` -> ``(H, W)`` of positive ints (ValueError naming the
    flag ``--name`` otherwise); empty, ``'none'`` or None -> None.

    Example:
        >>> size_from_text("180,240"), size_from_text("64x96"), size_from_text("8")
        ((180, 240), (64, 96), (8, 8))
    """
    if text is None or text in UNSET_TEXT:
        return None
    try:
        parts = [int(p) for p in str(text).lower().replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--{name} must be 'H,W' or 'S' with positive sizes. Received: "
                         f"{name}={text!r}")
    return tuple(parts)


def as_range(name, value):
    """``value`` as a (low, high) float pair with 0 < low <= high, or None.

    Example:
        >>> as_range("scale_range", (1, 2))
        (1.0, 2.0)
    """
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)):  # "12" would be read as (1, 2)
            raise TypeError(value)
        low, high = (float(v) for v in value)
        ok = 0 < low <= high < float("inf")
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be a (low, high) pair with 0 < low <= high. "
                         f"Received: {name}={value!r}")
    return low, high


def check_bool(name, value):
    """Returns ``value`` as a bool (Python or NumPy), or raises ``ValueError`` naming it."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_int(name, value, allow_none=False):
    """Returns ``value`` as an int (not a bool), or raises ``ValueError`` naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        accepted = "an int or None" if allow_none else "an int"
        raise ValueError(f"`{name}` must be {accepted}. Received: {name}={value!r}")
    return int(value)


def check_scales(scales):
    """`scales` (test-time image scales) as a tuple of finite positive floats, or raises
    ``ValueError`` naming them.

    Example:
        >>> check_scales([0.75, 1, 1.25])
        (0.75, 1.0, 1.25)
    """
    try:
        values = tuple(scales or ())
    except TypeError:
        values = ()
    # NaN passes `s <= 0`, infinity passes `s > 0`: both failed later in round().
    if not values or any(isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real)
                         or not math.isfinite(s) or s <= 0 for s in values):
        raise ValueError(f"`scales` must be finite positive numbers. Received: scales={scales!r}")
    return tuple(float(s) for s in values)


def count_non_finite(values):
    """The number of NaN or infinite entries of the numpy array ``values`` (0 for integers).

    One float64 sum decides first, so a finite array (the usual case) costs no boolean copy of
    its size: a 12000x12000 image's probabilities would need hundreds of MB for one.

    Example:
        >>> count_non_finite(np.array([1.0, np.nan, np.inf]))
        2
    """
    values = np.asarray(values)
    if values.dtype.kind != "f" or np.isfinite(values.sum(dtype="float64")):
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def pixel_value_problem(array, *, allow_bool=True, refuse_unit_floats=False):
    """What keeps the numpy ``array`` from being raw pixel values 0..255, or None: the one
    check behind every image entry point, each of which words its own error.

    uint8 arrays pass at once; others take one min and one max (NaN and infinities show there,
    so a finite image costs no further pass). Returns ``(problem, low, high)``, ``low`` and
    ``high`` being ``array.min()`` and ``array.max()`` (None for the first two problems):

    - ``"dtype"``: not real numbers (strings, objects, complex; bool unless ``allow_bool``);
    - ``"empty"``: no values;
    - ``"non_finite"``: NaN or infinite values (count them with :func:`count_non_finite`);
    - ``"range"``: values outside 0..255, or, with ``refuse_unit_floats``, a float array
      whose max is in (0, 1] (a 0..1 or -1..1 normalized image; an all-black one passes).

    Example:
        >>> pixel_value_problem(np.full((2, 2, 3), 7, np.uint8)) is None
        True
        >>> pixel_value_problem(np.full((2, 2, 3), 0.5), refuse_unit_floats=True)[0]
        'range'
    """
    if array.dtype == np.uint8:
        return None
    if array.dtype.kind not in ("biuf" if allow_bool else "iuf"):
        return "dtype", None, None
    if array.size == 0:
        return "empty", None, None
    low, high = array.min(), array.max()
    if array.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        return "non_finite", low, high
    if low < 0 or high > 255 or (refuse_unit_floats and array.dtype.kind == "f"
                                 and 0 < high <= 1):
        return "range", low, high
    return None


def check_finite_scores(bad_count, what="model output"):
    """Raises ``ValueError`` when ``bad_count`` (non-finite logits or probabilities) is not 0:
    their argmax would silently label those pixels class 0.

    Example:
        >>> check_finite_scores(3)
        Traceback (most recent call last):
        ValueError: The model output holds 3 non-finite values (NaN or infinity)...
    """
    if int(bad_count):
        raise ValueError(
            f"The {what} holds {int(bad_count)} non-finite values (NaN or infinity): a diverged "
            "model or broken weights? Their argmax would label those pixels class 0.")
