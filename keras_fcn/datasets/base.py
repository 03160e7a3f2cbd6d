"""`DatasetInfo`: what a model and a pipeline need to know about a data set."""

import dataclasses

from keras_fcn._checks import check_positive_int
from keras_fcn.labels import IGNORE_LABEL, MEAN_RGB, check_ignore_label, whole_number


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and pipeline need to know about a data set.

    Attributes:
        name: data set name.
        num_classes: number of classes (not counting the ignore label), a positive integer.
        class_names: names by class id, one per class (a sequence, not a string), or None.
        palette: (r, g, b) colours by class id, for display or colour-coded masks; when the
            ignore label indexes into it, that entry is the void colour.
        ignore_label: the void label, ignored in loss and metrics: an integer (or a whole
            float) outside ``[0, num_classes)`` (a class id would silently drop that class).
        mean_rgb: mean pixel (RGB), used as padding colour.
        mask_format: mask file format for `make_dataset` ("index", "rgb" or "sbd_mat").

    Raises:
        ValueError: ``num_classes`` is not a positive integer, ``class_names`` is a string or
            has another length than ``num_classes``, or ``ignore_label`` is not an integer
            outside ``[0, num_classes)``; the message names the field and its value.

    Example:
        >>> info = DatasetInfo("mine", 2, ("background", "cat"), ((0, 0, 0), (128, 0, 0)))
        >>> info.dataset_kwargs()["num_classes"]
        2
    """

    name: str
    num_classes: int
    class_names: tuple
    palette: tuple
    ignore_label: int = IGNORE_LABEL
    mean_rgb: tuple = MEAN_RGB
    mask_format: str = "index"

    def __post_init__(self):
        n = check_positive_int("num_classes", self.num_classes)
        object.__setattr__(self, "num_classes", n)
        names = self.class_names
        if names is not None:
            if isinstance(names, (str, bytes)):
                raise ValueError(f"DatasetInfo {self.name!r}: class_names must be a sequence of "
                                 f"names, one per class, not a string. Received: "
                                 f"class_names={names!r}")
            if len(names) != n:
                raise ValueError(f"DatasetInfo {self.name!r}: class_names must have one name per "
                                 f"class ({n}). Received {len(names)}: class_names="
                                 f"{list(names)!r}")
        ignore = check_ignore_label(whole_number("ignore_label", self.ignore_label), n,
                                    allow_none=False)
        object.__setattr__(self, "ignore_label", ignore)

    def dataset_kwargs(self):
        """Returns the keyword arguments of `make_dataset` that this data set fixes."""
        return {
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "mask_format": self.mask_format,
            "palette": self.palette if self.mask_format == "rgb" else None,
            "mean_rgb": self.mean_rgb,
        }
