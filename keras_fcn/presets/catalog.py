"""The table of the authors' released FCN models (fcn.berkeleyvision.org) and torchvision's
FCN-ResNets: what each one is, where its weights are, and what its outputs mean.

Each :class:`Preset` names the builder of :mod:`keras_fcn.models` and its arguments, the
reference ``.caffemodel`` URL (every model folder of the reference has a ``caffemodel-url``
file; the authors publish no checksums) or torchvision's ``.pth`` (its name carries the first
hex digits of its sha256, checked after download), the class names, the input and its
preprocessing, and the paper's figure.

Example:
    >>> list_presets()[:2]
    ['voc-fcn32s', 'voc-fcn16s']
    >>> preset_info("voc-fcn8s")["paper"]
    '65.5 mean IU, PASCAL VOC 2011 seg11valid (67.2 on VOC 2012 test)'
"""

import dataclasses
from typing import Callable

from keras_fcn.labels import VOC_CLASSES, ModelLabels
from keras_fcn.layers import FCN_MEAN_BGR
from keras_fcn.models import build_fcn, build_late_fusion_fcn, build_rgbd_fcn, build_two_headed_fcn
from keras_fcn.models.resnet import torchvision_normalization
from keras_fcn.models.trunk import did_you_mean
from keras_fcn.presets.converters import (
    convert_alexnet,
    convert_caffe,
    convert_late_fusion,
    convert_torchvision,
)
from keras_fcn.classes import (
    NYUD_CLASSES,
    NYUD_MEAN_BGR,
    NYUD_MEAN_HHA,
    NYUD_MEAN_LOG_DEPTH,
    PASCAL_CONTEXT_CLASSES,
    SIFTFLOW_GEOMETRIC_CLASSES,
    SIFTFLOW_MEAN_BGR,
    SIFTFLOW_SEMANTIC_CLASSES,
)

HOST = "http://dl.caffe.berkeleyvision.org/"
RAW_RGB = "RGB 0..255 (the model converts to BGR and subtracts mean_bgr itself)"
TORCHVISION_HOST = "https://download.pytorch.org/models/"
RAW_RGB_TORCHVISION = "RGB 0..255 (the model normalizes it itself: (x / 255 - mean_rgb) / std_rgb)"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One released model.

    Attributes:
        name: the preset name, e.g. ``"voc-fcn8s"``.
        url: the reference ``.caffemodel``.
        builder: the :mod:`keras_fcn.models` function that builds the architecture.
        build_kwargs: its arguments: ``builder(**build_kwargs)`` is the model, before the
            weights are converted in.
        dataset: the training data.
        class_names: a name per output class (the semantic head for SIFT Flow).
        input: what the model takes (``RAW_RGB`` or a description of the preprocessed input).
        mean_bgr: for RGB models, the mean of the reference data layer, subtracted inside the
            model (a ``preprocess`` layer); None when the input is preprocessed outside.
        normalization: how inputs are normalized, as written in the labels sidecar.
        paper: the paper's (or the reference's) figure for this model, or None.
        size_bytes: the size of the ``.caffemodel`` if known (checked after download), or None.
        rename: ``{caffe_layer: keras_layer}`` for layers named differently in the reference.
        geometric_class_names: the second head's classes (SIFT Flow), or None.
        converter: ``converter(preset, path, model)`` sets the model's weights from the
            downloaded file (:mod:`keras_fcn.presets.converters`): the reference's
            ``.caffemodel`` by layer name unless the preset names another.
    """

    name: str
    url: str
    builder: object
    build_kwargs: dict
    dataset: str
    class_names: tuple
    input: str = RAW_RGB
    mean_bgr: tuple = FCN_MEAN_BGR
    normalization: dict = None
    paper: str = None
    size_bytes: int = None
    rename: dict = None
    geometric_class_names: tuple = None
    converter: Callable = convert_caffe

    @property
    def filename(self):
        """The weights file name (the last part of the URL): ``.caffemodel`` or ``.pth``."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def num_classes(self):
        return len(self.class_names)


def _caffe_mean(mean_bgr):
    return {"type": "caffe_bgr_mean", "mean_bgr": [float(m) for m in mean_bgr],
            "formula": "RGB -> BGR, minus mean_bgr, no scaling"}


# The builders' arguments: no initial weights (the released ones are converted in), and the
# reference's Caffe preprocessing inside the model where its mean is the VGG16 one.
RGB_MODEL = {"weights": None, "include_preprocessing": True}


def _voc(name, file, variant, paper, converter=convert_caffe, **build):
    return Preset(name, HOST + file, build_fcn,
                  {"variant": variant, "num_classes": 21, **RGB_MODEL, **build}, "voc",
                  VOC_CLASSES, paper=paper, converter=converter)


def _context(variant):
    return Preset(f"pascalcontext-fcn{variant}",
                  f"{HOST}pascalcontext-fcn{variant}-heavy.caffemodel", build_fcn,
                  {"variant": variant, "num_classes": 60, **RGB_MODEL}, "pascal_context",
                  PASCAL_CONTEXT_CLASSES)


def _nyud(modality, builder, build_kwargs, paper, **fields):
    """NYUDv2 presets: their inputs have other means, so no ``include_preprocessing``; the
    colour model gets its own mean from ``mean_bgr`` (see keras_fcn.presets.fetch)."""
    return Preset(f"nyud-fcn32s-{modality}", f"{HOST}nyud-fcn32s-{modality}-heavy.caffemodel",
                  builder, {"variant": "32s", "num_classes": 40, **build_kwargs}, "nyud",
                  NYUD_CLASSES, paper=f"{paper} mean IU, NYUDv2 test (journal version, Table 4; unverified)",
                  **fields)


def _siftflow(variant, paper=None):
    return Preset(f"siftflow-fcn{variant}", f"{HOST}siftflow-fcn{variant}-heavy.caffemodel",
                  build_two_headed_fcn,
                  {"variant": variant, "num_semantic": 33, "num_geometric": 3, "weights": None},
                  "siftflow", SIFTFLOW_SEMANTIC_CLASSES, mean_bgr=SIFTFLOW_MEAN_BGR, paper=paper,
                  geometric_class_names=SIFTFLOW_GEOMETRIC_CLASSES)


def _coco_fcn_resnet(depth, file, paper):
    """torchvision's FCN-ResNet (COCO_WITH_VOC_LABELS_V1): trained on the COCO train2017 images
    of the 20 VOC categories, 21 VOC classes. Built without the auxiliary head, whose weights
    the conversion drops (torchvision's output "out" does not use it)."""
    return Preset(f"coco-fcn-resnet{depth}", TORCHVISION_HOST + file, build_fcn,
                  {"variant": "dilated", "backbone": f"resnet{depth}", "num_classes": 21,
                   **RGB_MODEL}, "coco_voc_labels", VOC_CLASSES, input=RAW_RGB_TORCHVISION,
                  mean_bgr=None, normalization=torchvision_normalization(), paper=paper,
                  converter=convert_torchvision)


_PREPROCESSED_HHA = ("HHA 0..255 (channels in file order) minus mean_hha: "
                     "keras_fcn.datasets.nyud.preprocess_hha")
_PREPROCESSED_RGBD = ("4 channels: BGR minus mean_bgr, then log(depth in mm) minus mean_log_depth: "
                      "keras_fcn.datasets.nyud.preprocess_rgbd")
_PREPROCESSED_FUSION = ("{'rgb': BGR minus mean_bgr, 'hha': HHA minus mean_hha}: "
                        "keras_fcn.datasets.nyud.preprocess_rgb and preprocess_hha")

PRESETS = {preset.name: preset for preset in (
    _voc("voc-fcn32s", "fcn32s-heavy-pascal.caffemodel", "32s",
         "63.6 mean IU, PASCAL VOC 2011 seg11valid"),
    _voc("voc-fcn16s", "fcn16s-heavy-pascal.caffemodel", "16s",
         "65.0 mean IU, PASCAL VOC 2011 seg11valid"),
    _voc("voc-fcn8s", "fcn8s-heavy-pascal.caffemodel", "8s",
         "65.5 mean IU, PASCAL VOC 2011 seg11valid (67.2 on VOC 2012 test)"),
    _voc("voc-fcn8s-atonce", "fcn8s-atonce-pascal.caffemodel", "8s_at_once",
         "65.4 mean IU, PASCAL VOC 2011 seg11valid"),
    _voc("voc-fcn-alexnet", "fcn-alexnet-pascal.caffemodel", "32s",
         "48.0 mean IU, PASCAL VOC 2011 seg11valid", convert_alexnet, backbone="alexnet"),
    _context("32s"),
    _context("16s"),
    _context("8s"),
    _nyud("color", build_fcn, {"weights": None}, "29.2", mean_bgr=NYUD_MEAN_BGR),
    _nyud("hha", build_fcn, {"weights": None}, "24.2", mean_bgr=None, input=_PREPROCESSED_HHA,
          normalization={"type": "mean", "mean": list(NYUD_MEAN_HHA),
                         "formula": "HHA minus mean, channels in file order"}),
    _nyud("color-d", build_rgbd_fcn, {"weights": None}, "30.5", mean_bgr=None,
          input=_PREPROCESSED_RGBD, rename={"conv1_1_bgrd": "conv1_1"},
          normalization={"type": "rgbd", "mean_bgr": list(NYUD_MEAN_BGR),
                         "mean_log_depth": NYUD_MEAN_LOG_DEPTH,
                         "formula": "BGR minus mean_bgr; log(depth_mm) minus mean_log_depth"}),
    _nyud("color-hha", build_late_fusion_fcn,
          {"weights_rgb": None, "weights_hha": None, "fusion_weights": (0.5, 0.5)}, "32.8",
          mean_bgr=None, input=_PREPROCESSED_FUSION, converter=convert_late_fusion,
          normalization={"type": "rgb_hha", "mean_bgr": list(NYUD_MEAN_BGR),
                         "mean_hha": list(NYUD_MEAN_HHA),
                         "formula": "rgb: RGB -> BGR minus mean_bgr; hha: minus mean_hha"}),
    _siftflow("32s"),
    _siftflow("16s", "39.5 mean IU (33 semantic classes), 94.3 geometric pixel accuracy, "
                     "SIFT Flow test (CVPR 2015, Table 5)"),
    _siftflow("8s"),
    _coco_fcn_resnet(50, "fcn_resnet50_coco-1167a1af.pth",
                     "60.5 mean IU, 91.4 pixel accuracy, COCO val2017 (VOC classes; torchvision)"),
    _coco_fcn_resnet(101, "fcn_resnet101_coco-7ecb50ca.pth",
                     "63.7 mean IU, 91.9 pixel accuracy, COCO val2017 (VOC classes; torchvision)"),
)}


def get_preset(name):
    """The :class:`Preset` of ``name``.

    Raises:
        ValueError: unknown name; the message lists the presets.

    Example:
        >>> get_preset("voc-fcn8s").num_classes
        21
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {list_presets()}."
                         f"{did_you_mean(name, PRESETS)} Received: name={name!r}")
    return PRESETS[name]


def list_presets():
    """The preset names, PASCAL VOC first.

    Example:
        >>> "nyud-fcn32s-color-hha" in list_presets()
        True
    """
    return list(PRESETS)


def preset_labels(name):
    """The :class:`keras_fcn.labels.ModelLabels` of a preset (the semantic head for SIFT Flow).

    Example:
        >>> preset_labels("pascalcontext-fcn8s").class_names[:2]
        ('background', 'aeroplane')
    """
    preset = get_preset(name)
    normalization = preset.normalization
    if normalization is None:
        normalization = _caffe_mean(preset.mean_bgr)
    return ModelLabels(num_classes=preset.num_classes, class_names=preset.class_names,
                       dataset=preset.dataset, model_name=preset.name,
                       normalization=normalization)


def preset_info(name):
    """A plain dict describing a preset (for printing or JSON).

    Example:
        >>> info = preset_info("siftflow-fcn16s")
        >>> info["num_classes"], info["geometric_class_names"]
        (33, ['sky', 'horizontal', 'vertical'])
    """
    preset = get_preset(name)
    builder = preset.builder
    return {
        "name": preset.name, "url": preset.url, "dataset": preset.dataset,
        "builder": f"{builder.__module__}.{builder.__name__}",
        "build_kwargs": dict(preset.build_kwargs), "num_classes": preset.num_classes,
        "class_names": list(preset.class_names), "input": preset.input,
        "normalization": preset_labels(name).normalization, "paper": preset.paper,
        "size_bytes": preset.size_bytes,
        "geometric_class_names": (None if preset.geometric_class_names is None
                                  else list(preset.geometric_class_names)),
    }
