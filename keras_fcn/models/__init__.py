"""The FCN models: one builder over the registered trunks (VGG16, MobileNetV2, AlexNet,
GoogLeNet; the contract is :class:`Trunk`), the multi-modal and two-headed models of the
paper, and what a built model is and how to feed it.

Example:
    >>> from keras_fcn.models import build_fcn8s, raw_rgb_model
    >>> deployable = raw_rgb_model(build_fcn8s(num_classes=21, weights=None))
"""

from keras_fcn.models.alexnet import (  # noqa: F401
    ALEXNET_WIDTHS,
    alexnet_features,
)
from keras_fcn.models.alignment import coord_maps, derive_offsets  # noqa: F401
from keras_fcn.models.builders import (  # noqa: F401
    BACKBONES,
    DEPRECATED_BUILDERS,
    VARIANTS,
    build_alexnet_fcn,
    build_fcn,
    build_fcn8s,
    build_fcn16s,
    build_fcn32s,
    build_googlenet_fcn,
    build_mobilenet_v2_fcn,
    build_vgg16_fcn,
    check_fcn_args,
)
from keras_fcn.models.googlenet import (  # noqa: F401
    GOOGLENET_WIDTHS,
    googlenet_features,
    googlenet_widths,
)
from keras_fcn.models.inspect import (  # noqa: F401
    all_layers,
    backbone_of,
    legacy_backbone,
    has_preprocessing,
    normalization_of,
    num_classes_of,
    preprocessing_fn,
    raw_rgb_model,
    with_preprocessing,
)
from keras_fcn.models.mobilenet_v2 import (  # noqa: F401
    PadToMultiple,
    fetch_mobilenet_v2_imagenet_weights,
    mobilenet_v2_preprocess_input,
    mobilenet_v2_preprocessing,
)
from keras_fcn.models.named_weights import register_named_weights, weight_names  # noqa: F401
from keras_fcn.models.multimodal import (  # noqa: F401
    build_late_fusion_fcn,
    build_rgbd_fcn,
    build_two_headed_fcn,
)
from keras_fcn.models.resnet import (  # noqa: F401
    build_fcn_resnet50,
    build_fcn_resnet101,
    resnet_features,
    torchvision_preprocess_input,
)
from keras_fcn.models.trunk import (  # noqa: F401
    CAFFE,
    FCN,
    Preprocessing,
    Trunk,
    build_before_fit,
    get_trunk,
    list_trunks,
    register_trunk,
)
from keras_fcn.models.vgg16 import VGG16_WIDTHS, vgg16_features  # noqa: F401
