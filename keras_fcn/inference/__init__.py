"""TEMPORARY during the move to wings: re-exports every name of the old flat module."""

from keras_fcn.inference import predict as _m

globals().update({k: v for k, v in vars(_m).items() if not k.startswith("__")})
from keras_fcn.inference import video  # noqa: E402,F401
