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
import os

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


def _colour(value, where):
    try:
        colour = tuple(int(c) for c in value)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
        raise ValueError(f"{where} must be an (r, g, b) colour with values in 0..255. "
                         f"Received: {value!r}")
    return colour


@dataclasses.dataclass(frozen=True)
class ModelLabels:
    """The meaning of a segmentation model's outputs, stored beside the model.

    Args:
        num_classes: number of output classes.
        class_names: a name per class id; default ``class_0``, ``class_1``, ...
        palette: an (r, g, b) colour per class id; default the PASCAL VOC colours. A palette
            with one more colour than classes (the void colour, as training wrote it before)
            keeps its first ``num_classes`` colours.
        ignore_label: the void label of the training data (``None`` if it had none).
        dataset: name of the training data set.
        model_name: e.g. ``"fcn8s"``.
        image_size: ``(height, width)`` the model was trained at, or None (native sizes).
        normalization: how inputs are normalized inside the model
            (``keras_fcn.models.normalization_of``).
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
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_classes must be a positive integer. Received: {n!r}")
        names = (tuple(f"class_{i}" for i in range(n)) if self.class_names is None
                 else tuple(str(name) for name in self.class_names))
        palette = (voc_palette(n) if self.palette is None
                   else tuple(_colour(c, f"palette[{i}]") for i, c in enumerate(self.palette)))
        if len(palette) == n + 1:
            palette = palette[:n]  # legacy labels.json: the void colour came last
        for what, values in (("class_names", names), ("palette", palette)):
            if len(values) != n:
                raise ValueError(f"{what} must have one entry per class ({n}). "
                                 f"Received {len(values)}: {what}={list(values)!r}")
        if self.ignore_label is not None and not 0 <= int(self.ignore_label) <= 65535:
            raise ValueError(f"ignore_label must be in 0..65535 or None. "
                             f"Received: {self.ignore_label!r}")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "palette", palette)
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))

    @classmethod
    def from_info(cls, info, **kwargs):
        """From a ``keras_fcn.datasets.DatasetInfo`` (or anything with ``num_classes``,
        ``class_names``, ``palette``, ``ignore_label`` and ``name``)."""
        return cls(num_classes=int(info.num_classes), class_names=info.class_names,
                   palette=info.palette, ignore_label=info.ignore_label,
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
        """Reads the sidecar object; also reads the two formats of keras_fcn 0.1.0."""
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
            return cls(num_classes=int(num_classes), class_names=names, palette=palette,
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
        folder), else None."""
        for path in (cls.sidecar_path(model_path),
                     os.path.join(os.path.dirname(os.fspath(model_path)), "labels.json")):
            if os.path.isfile(path):
                return cls.read(path)
        return None

    def with_updates(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
