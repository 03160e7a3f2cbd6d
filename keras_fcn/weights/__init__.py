"""Weights: reading and writing them by layer name, the ImageNet backbones, and the released
Caffe and PyTorch FCN weights.

Example:
    >>> from keras_fcn.weights import convert_to_keras_model, read_weights
"""

from keras_fcn.weights.caffe import (  # noqa: F401
    CaffeLayer,
    CaffeModelError,
    convert_caffe_layers,
    convert_caffemodel,
    read_caffe_layers,
    read_caffemodel,
)
from keras_fcn.weights.convert import (  # noqa: F401
    CONVERTED_SUFFIXES,
    convert_to_keras_model,
    read_converted_weights,
)
from keras_fcn.weights.imagenet import (  # noqa: F401
    KERAS_VGG16_TO_FCN,
    VGG16_FCN_LAYERS,
    fetch_mobilenet_v2_imagenet_weights,
    fetch_vgg16_imagenet_weights,
)
from keras_fcn.weights.io import (  # noqa: F401
    SAVED_SUFFIXES,
    load_model_file,
    load_weights,
    read_weights,
    save_weights_file,
    set_weights_by_name,
)
from keras_fcn.weights.layouts import conv_kernel_to_keras, deconv_kernel_to_keras  # noqa: F401
from keras_fcn.weights.npz import load_npz, save_npz  # noqa: F401
from keras_fcn.weights.torch import convert_torch_state_dict, load_torch_state_dict  # noqa: F401
from keras_fcn.weights.torchvision import (  # noqa: F401
    check_sha256_prefix,
    convert_torchvision_state_dict,
    fetch_torchvision_resnet_weights,
    load_torchvision_weights,
)
