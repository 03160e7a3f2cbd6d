"""TEMPORARY during the move to wings: re-exports every name of the old flat module."""

from keras_fcn.data import pipeline as _m

globals().update({k: v for k, v in vars(_m).items() if not k.startswith("__")})
