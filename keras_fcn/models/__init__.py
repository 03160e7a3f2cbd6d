"""TEMPORARY during the move to wings: re-exports every name of the old flat module."""

from keras_fcn.models import vgg16 as _m

globals().update({k: v for k, v in vars(_m).items() if not k.startswith("__")})
from keras_fcn.models import mobilenet_v2  # noqa: E402,F401
from keras_fcn.models import multimodal  # noqa: E402,F401
