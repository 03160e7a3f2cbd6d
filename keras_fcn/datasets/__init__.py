"""TEMPORARY during the move to wings: re-exports every name of the old flat module."""

from keras_fcn.datasets import catalog as _m

globals().update({k: v for k, v in vars(_m).items() if not k.startswith("__")})
from keras_fcn.datasets import shapes  # noqa: E402,F401
from keras_fcn.datasets import hha  # noqa: E402,F401
from keras_fcn.datasets import nyud  # noqa: E402,F401
from keras_fcn.datasets import siftflow  # noqa: E402,F401
