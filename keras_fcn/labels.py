"""What a model's outputs mean: class names, colours, the void label, and the one sidecar file.

Training, predict, evaluate and export all describe a model with :class:`ModelLabels` and store
it in one JSON format next to the model (``model.keras`` -> ``model.labels.json``,
``model.tflite`` -> ``model.json``, and ``labels.json`` in a run folder).

Example:
    >>> labels = ModelLabels(num_classes=3, class_names=("sky", "road", "car"))
    >>> _ = labels.write(ModelLabels.sidecar_path("runs/a/model.keras"))  # the written dict
    >>> ModelLabels.for_model("runs/a/model.keras").class_names
    ('sky', 'road', 'car')
"""

import dataclasses
import math
import os

import numpy as np

from keras_fcn import io

IGNORE_LABEL = 255  # the void label of PASCAL VOC and the default of every reader and loss
# The padding colour of the data pipelines: the Caffe VGG16 mean (104.00699, 116.66877,
# 122.67892) is BGR; this is the same mean in RGB (zero after the model's mean subtraction).
MEAN_RGB = (122.67892, 116.66877, 104.00699)
FORMAT = "keras_fcn"
FORMAT_VERSION = 2  # 1: the export metadata and training labels.json of keras_fcn 0.1.0

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(num_colours=256):
    """Returns the PASCAL VOC colour map: bits of the index spread over R, G and B.

    Bit k of the index goes to bit (7 - k // 3) of R, G or B (k % 3 = 0, 1, 2).

    Args:
        num_colours: number of entries.

    Returns:
        Tuple of (r, g, b) tuples; entry 255 is the void colour (224, 224, 192).

    Example:
        >>> voc_palette()[:3]
        ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    """
    colours = []
    for index in range(num_colours):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
        colours.append(tuple(rgb))
    return tuple(colours)


def check_colour(value, where="colour"):
    """``value`` as an (r, g, b) tuple of ints in 0..255, or a ValueError naming ``where``:
    a colour with fractional values (a palette on the 0..1 scale) is refused, not truncated
    to black.

    Example:
        >>> check_colour((128, 0, 0.0))
        (128, 0, 0)
    """
    try:
        colour = tuple(whole_number(where, c) for c in value)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
        raise ValueError(f"{where} must be an (r, g, b) colour of whole numbers in 0..255. "
                         f"Received: {_plain(value)!r}")
    return colour


def check_palette(palette, max_colours=256):
    """``palette`` as an array of up to ``max_colours`` (None: any number of) (r, g, b) whole
    numbers in 0..255, or a ValueError naming what is wrong.

    One colour follows :func:`check_colour`'s rule (whole numbers in 0..255);
    a palette is also refused when it is float and every value lies in [0, 1]: a palette on
    matplotlib's 0..1 scale, whose colours would all be near black. One colour cannot tell
    that ((1, 0, 0) is a valid colour), so this check looks at the whole palette.

    Example:
        >>> check_palette([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        Traceback (most recent call last):
        ValueError: palette colours must be in 0..255, but this float palette has every value ...
    """
    limit = "" if max_colours is None else f"up to {max_colours} "
    try:
        palette = np.asarray(palette)
    except ValueError:  # a ragged list
        raise ValueError(f"palette must be {limit}(r, g, b) colours. Received: "
                         f"palette={palette!r}") from None
    if palette.ndim != 2 or palette.shape[1] != 3 or (max_colours is not None
                                                       and len(palette) > max_colours):
        raise ValueError(
            f"palette must be {limit}(r, g, b) colours. Received: shape={palette.shape}"
        )
    if palette.dtype.kind not in "iuf":
        raise ValueError(f"palette colours must be whole numbers in 0..255. Received: "
                         f"dtype={palette.dtype}")
    if not palette.size:
        return palette
    if palette.dtype.kind == "f":
        finite = np.isfinite(palette)
        whole = finite & (palette == np.round(np.where(finite, palette, 0)))
        if not whole.all():
            row = int(np.argwhere(~whole)[0][0])
            hint = (" A palette in [0, 1]? Multiply by 255 and round."
                    if finite.all() and palette.min() >= 0 and palette.max() <= 1 else "")
            raise ValueError(f"palette colours must be whole numbers in 0..255 (uint8 RGB). "
                             f"Received: palette[{row}]={palette[row].tolist()}.{hint}")
        _check_not_unit_scale(palette)
    if palette.min() < 0 or palette.max() > 255:
        raise ValueError("palette colours must be in 0..255. "
                         f"Received: min={palette.min()}, max={palette.max()}")
    return palette


def _check_not_unit_scale(palette):
    """Refuses a float palette (an array) with every value in [0, 1]: matplotlib's 0..1
    scale, whose colours would all be near black as 0..255 colours."""
    if palette.dtype.kind == "f" and palette.size and np.isfinite(palette).all() \
            and palette.min() >= 0 and 0 < palette.max() <= 1:
        raise ValueError(
            "palette colours must be in 0..255, but this float palette has every value in "
            f"[0, 1] (max={palette.max()}): a palette on the 0..1 scale? Multiply by 255 "
            "and round, or pass integer colours.")


def _plain(value):
    """``value`` with NumPy arrays as lists, for messages."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def whole_number(name, value, expected="an integer"):
    """``value`` as an int: a Python or NumPy integer, or a float with no fractional part (as
    JSON may hold ``3.0``); else a ValueError naming it (``int()`` would truncate 2.9 to 2).

    Example:
        >>> whole_number("num_classes", 3.0), whole_number("num_classes", np.int64(3))
        (3, 3)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) \
            and float(value).is_integer():
        return int(value)
    raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")


def check_ignore_label(ignore_label, num_classes, allow_none=True):
    """``ignore_label`` as an int (a whole float such as JSON's ``255.0`` too) or None; a
    ValueError if it is not a whole number, or if it is a class id (in ``[0, num_classes)``):
    the pixels of that class would silently be left out of the loss and the metrics.
    ``allow_none``: whether the message may suggest None (no void label).

    Example:
        >>> check_ignore_label(1, 3)
        Traceback (most recent call last):
        ValueError: ignore_label=1 is a class id; expected a value outside [0, 3), e.g. 255 ...
    """
    if ignore_label is not None:
        ignore_label = whole_number("ignore_label", ignore_label, "an integer or None"
                                    if allow_none else "an integer")
    if ignore_label is not None and 0 <= ignore_label < num_classes:
        example = IGNORE_LABEL if num_classes <= IGNORE_LABEL else num_classes
        raise ValueError(
            f"ignore_label={ignore_label} is a class id; expected a value outside "
            f"[0, {num_classes}), e.g. {example} (the pixels of class {ignore_label} would be "
            "left out of the loss and the metrics)"
            + (", or None for no void label" if allow_none and ignore_label == IGNORE_LABEL
               else "") + ".")
    return ignore_label


def _name_sequence(class_names):
    """``class_names`` as a list; a ValueError for a string (split into characters) or a
    value that is not a sequence."""
    if isinstance(class_names, (str, bytes)):
        raise ValueError("class_names must be a sequence of names, one per class, not a "
                         f"string. Received: class_names={class_names!r}")
    try:
        return list(class_names)
    except TypeError:
        raise ValueError("class_names must be a sequence of names, one per class. "
                         f"Received: class_names={class_names!r}") from None


def _image_size(value):
    """``value`` as a (height, width) pair of positive ints, or a ValueError naming it."""
    if isinstance(value, (int, np.integer, float)) and not isinstance(value, bool):
        raise ValueError(f"image_size must be a (height, width) pair of positive ints, not a "
                         f"bare number. Received: image_size={value!r} (for a square, "
                         f"pass ({value}, {value}))")
    try:
        pair = tuple(value)
        size = tuple(whole_number("image_size", v) for v in pair)
        ok = len(size) == 2 and min(size) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("image_size must be a (height, width) pair of positive ints. "
                         f"Received: image_size={value!r}")
    return size


@dataclasses.dataclass(frozen=True)
class ModelLabels:
    """The meaning of a segmentation model's outputs, stored beside the model.

    Args:
        num_classes: number of output classes, a positive integer (NumPy integers and whole
            floats such as JSON's ``3.0`` are accepted; 2.9 is refused, not truncated).
        class_names: a sequence of one name per class id (not a string); default
            ``class_0``, ``class_1``, ...
        palette: an (r, g, b) colour per class id; default the PASCAL VOC colours. A palette
            with one more colour than classes (the void colour, as training wrote it before)
            keeps its first ``num_classes`` colours.
        ignore_label: the void label of the training data (``None`` if it had none): an
            integer in 0..65535 outside ``[0, num_classes)`` (a class id would silently drop
            that class). The default 255 needs ``num_classes <= 255``.
        dataset: name of the training data set.
        model_name: e.g. ``"fcn8s"``.
        image_size: ``(height, width)`` positive ints the model was trained at, or None
            (native sizes).
        normalization: how inputs are normalized inside the model
            (``keras_fcn.models.normalization_of``).

    Raises:
        ValueError: a field that breaks the rules above; the message names it and its value.
    """

    num_classes: int
    class_names: tuple = None
    palette: tuple = None
    ignore_label: int = IGNORE_LABEL
    dataset: str = None
    model_name: str = None
    image_size: tuple = None
    normalization: dict = None

    def __post_init__(self):
        n = whole_number("num_classes", self.num_classes, "a positive integer")
        if n < 1:
            raise ValueError(f"num_classes must be a positive integer. Received: "
                             f"num_classes={self.num_classes!r}")
        names = (tuple(f"class_{i}" for i in range(n)) if self.class_names is None
                 else tuple(str(name) for name in _name_sequence(self.class_names)))
        palette = self.palette
        if palette is None:
            palette = voc_palette(n)
        else:
            palette = tuple(check_colour(c, f"palette[{i}]") for i, c in enumerate(palette))
            _check_not_unit_scale(np.asarray(self.palette))  # one colour cannot tell
        if len(palette) == n + 1:
            palette = palette[:n]  # legacy labels.json: the void colour came last
        for what, values in (("class_names", names), ("palette", palette)):
            if len(values) != n:
                raise ValueError(f"{what} must have one entry per class ({n}). "
                                 f"Received {len(values)}: {what}={list(values)!r}")
        ignore = self.ignore_label
        if ignore is not None:
            ignore = whole_number("ignore_label", ignore, "an integer or None")
            if not 0 <= ignore <= 65535:
                raise ValueError(f"ignore_label must be in 0..65535 or None. "
                                 f"Received: {self.ignore_label!r}")
            check_ignore_label(ignore, n)
        object.__setattr__(self, "num_classes", n)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "palette", palette)
        object.__setattr__(self, "ignore_label", ignore)
        if self.image_size is not None:
            object.__setattr__(self, "image_size", _image_size(self.image_size))

    @classmethod
    def from_info(cls, info, **kwargs):
        """From a ``keras_fcn.datasets.DatasetInfo`` (or anything with ``num_classes``,
        ``class_names``, ``palette``, ``ignore_label`` and ``name``). A data set's palette
        may colour more ids than classes (VOC's 256 PNG colours, void included): the model's
        labels keep the colours of its classes.

        Example:
            >>> len(ModelLabels.from_info(keras_fcn.VOC_INFO).palette)
            21
        """
        palette = info.palette
        if palette is not None and len(palette) > info.num_classes:
            palette = tuple(palette)[:info.num_classes]
        return cls(num_classes=info.num_classes, class_names=info.class_names,
                   palette=palette, ignore_label=info.ignore_label,
                   dataset=getattr(info, "name", None), **kwargs)

    def to_dict(self, extra=None):
        """The JSON object of the sidecar; ``extra`` keys (export details) are added."""
        from keras_fcn._version import __version__

        data = {
            "format": FORMAT, "version": FORMAT_VERSION, "keras_fcn_version": __version__,
            "dataset": self.dataset, "model_name": self.model_name,
            "num_classes": self.num_classes, "labels": list(range(self.num_classes)),
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "ignore_label": None if self.ignore_label is None else int(self.ignore_label),
            "image_size": None if self.image_size is None else list(self.image_size),
            "normalization": self.normalization,
            "input_color": "RGB", "input_range": [0, 255],
            "output": "logits (N, H, W, num_classes), aligned with the input; argmax = class id",
        }
        data.update(extra or {})
        return data

    @classmethod
    def from_dict(cls, data, source="labels"):
        """Reads the sidecar object; also reads the two formats of keras_fcn 0.1.0.

        Raises:
            ValueError: ``data`` is not a dict, names no classes, or has a field that
                :class:`ModelLabels` refuses; the message starts with ``source``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source} must hold a JSON object. Received: {data!r}")
        names, palette = data.get("class_names"), data.get("palette")
        num_classes = data.get("num_classes")
        if num_classes is None:  # 0.1.0 predict sidecars: names and/or palette only
            known = names if names is not None else palette
            if known is None:
                raise ValueError(f"{source} names no classes: it needs 'num_classes', "
                                 "'class_names' or 'palette'.")
            num_classes = len(known)
        image_size = data.get("image_size")
        if image_size is None:  # 0.1.0 labels.json kept it under "preprocessing"
            image_size = (data.get("preprocessing") or {}).get("image_size")
        try:
            return cls(num_classes=num_classes, class_names=names, palette=palette,
                       ignore_label=data.get("ignore_label", IGNORE_LABEL),
                       dataset=data.get("dataset"),
                       model_name=data.get("model_name", data.get("model")),
                       image_size=image_size, normalization=data.get("normalization"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from error

    def write(self, path, extra=None, overwrite=True):
        """Writes the sidecar JSON atomically; returns the dict written."""
        data = self.to_dict(extra)
        io.write_json(path, data, overwrite=overwrite)
        return data

    @classmethod
    def read(cls, path):
        """Reads a sidecar, or the ``labels.json`` of a run folder."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "labels.json")
        return cls.from_dict(io.read_json(path, "Labels file"), source=f"Labels file {path!r}")

    @staticmethod
    def sidecar_path(model_path):
        """``x.keras`` -> ``x.labels.json``; ``x.tflite`` -> ``x.json``."""
        root, ext = os.path.splitext(os.fspath(model_path))
        return root + (".json" if ext == ".tflite" else ".labels.json")

    @classmethod
    def for_model(cls, model_path):
        """The labels of a model file: its sidecar, else the ``labels.json`` beside it (a run
        folder), else those a run saved in the ``.keras`` file itself (a model copied out of
        its run keeps its class names, colours and training size), else None."""
        for path in (cls.sidecar_path(model_path),
                     os.path.join(os.path.dirname(os.fspath(model_path)), "labels.json")):
            if os.path.isfile(path):
                return cls.read(path)
        saved = saved_labels(model_path)
        return None if saved is None else cls.from_dict(
            saved, source=f"The labels saved in {os.fspath(model_path)!r}")

    def with_updates(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def saved_labels(model_path):
    """The labels dict a run saved in the ``.keras`` file ``model_path`` (its FCN config's
    ``fcn["labels"]``, `keras_fcn.training.fit`), read from the archive without loading the
    model; None for another file or a model saved without them.

    Example:
        saved_labels("best.keras")["class_names"]
    """
    import json
    import zipfile

    try:
        with zipfile.ZipFile(os.fspath(model_path)) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    labels = ((config.get("config") or {}).get("fcn") or {}).get("labels") \
        if isinstance(config, dict) else None
    return labels if isinstance(labels, dict) else None
