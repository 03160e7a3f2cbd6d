"""`DatasetInfo`: what a model and a pipeline need to know about a data set."""

import dataclasses

from keras_fcn.labels import IGNORE_LABEL, MEAN_RGB


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and pipeline need to know about a data set.

    Attributes:
        name: data set name.
        num_classes: number of classes (not counting the ignore label).
        class_names: names by class id.
        palette: (r, g, b) colours by class id, for display or colour-coded masks; when the
            ignore label indexes into it, that entry is the void colour.
        ignore_label: the void label, ignored in loss and metrics.
        mean_rgb: mean pixel (RGB), used as padding colour.
        mask_format: mask file format for `make_dataset` ("index", "rgb" or "sbd_mat").

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

    def dataset_kwargs(self):
        """Returns the keyword arguments of `make_dataset` that this data set fixes."""
        return {
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "mask_format": self.mask_format,
            "palette": self.palette if self.mask_format == "rgb" else None,
            "mean_rgb": self.mean_rgb,
        }
