"""Parsers of the training flags' values (`keras_fcn.training.config`): sizes, lists, the
verbosity, and the absl parser of a number flag that may be unset.

On the command line an empty value or ``none`` unsets a flag whose default is unset (None):
``--dropout=`` and ``--dropout=none`` mean the trunk's dropout, ``--learning_rate=`` the
recipe's rate, as a flag left out does.

Example:
    >>> parse_size("180,240"), parse_floats("none")
    ((180, 240), None)
    >>> optional_number_parser("float").parse(""), optional_number_parser("float").parse("0.3")
    (None, 0.3)
"""

from keras_fcn._checks import UNSET_TEXT, size_from_text

VERBOSITY = ("auto", "0", "1", "2")


def parse_size(text, name="size"):
    """``'H,W'``, ``'HxW'`` or ``'S'`` -> ``(H, W)``; empty or ``'none'`` -> None.

    Example:
        >>> parse_size("180,240")
        (180, 240)
    """
    return size_from_text(text, name)  # the one size parser, also inference's


def parse_floats(text, name="values"):
    """``'1,0.5'`` -> ``(1.0, 0.5)``; empty or ``'none'`` -> None.

    Example:
        >>> parse_floats("0.8,1.25")
        (0.8, 1.25)
    """
    if text is None or text in UNSET_TEXT:
        return None
    try:
        return tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated numbers. Received: "
                         f"{name}={text!r}") from None


def parse_ints(text, name):
    """``'8,16'`` -> ``(8, 16)`` (positive integers); empty or ``'none'`` -> None.

    Example:
        >>> parse_ints("8,16", "widths")
        (8, 16)
    """
    values = parse_floats(text, name)
    if values is not None and any(v != int(v) or v < 1 for v in values):
        raise ValueError(f"--{name} must be comma-separated positive integers. Received: "
                         f"{name}={text!r}")
    return None if values is None else tuple(int(v) for v in values)


def parse_verbose(text, name="verbose"):
    """``'auto'`` or ``'0'``/``'1'``/``'2'`` -> ``'auto'`` or the int.

    Example:
        >>> parse_verbose("2")
        2
    """
    if str(text) not in VERBOSITY:
        raise ValueError(f"--{name} must be one of {VERBOSITY}. Received: {name}={text!r}")
    return "auto" if text == "auto" else int(text)


def optional_number_parser(kind):
    """The absl parser of a ``kind`` ("float" or "integer") flag whose default is unset: empty
    and ``none`` parse to None (absl's own number parsers refuse them: "could not convert
    string to float: ''"), anything else as absl's number parser does.

    Example:
        >>> parser = optional_number_parser("integer")
        >>> parser.parse("none"), parser.parse("64"), parser.flag_type()
        (None, 64, 'int')
    """
    from absl import flags

    if kind not in ("float", "integer"):
        raise ValueError(f"optional_number_parser: kind must be 'float' or 'integer'. "
                         f"Received: kind={kind!r}")
    base = flags.FloatParser if kind == "float" else flags.IntegerParser

    class OptionalNumberParser(base):
        def parse(self, argument):
            if argument is None or (isinstance(argument, str)
                                    and argument.strip() in UNSET_TEXT):
                return None
            return super().parse(argument)

    return OptionalNumberParser()
