"""Argument checks shared by the package: errors name the argument and the received value."""

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
