"""The 0.1.x positional builders (``build_vgg16_fcn`` and the others): each warns, names its
replacement and builds what ``build_fcn(..., backbone=...)`` builds."""

import inspect

import keras
import numpy as np
import pytest

from keras_fcn import models
from keras_fcn.models import build_fcn, googlenet_widths

OLD_PARAMETERS = ["variant", "num_classes", "input_shape", "weights", "dropout",
                  "trainable_upsampling", "include_preprocessing", "name", "widths", "fc_units"]
CASES = {  # name: (variant, options)
    "build_vgg16_fcn": ("16s", {"widths": (4, 4, 8, 8, 8), "fc_units": 8}),
    "build_mobilenet_v2_fcn": ("8s_at_once", {}),
    "build_alexnet_fcn": ("32s", {"widths": (4, 4, 8, 8, 8), "fc_units": 8}),
    "build_googlenet_fcn": ("32s", {"widths": googlenet_widths(32)}),
}


def test_the_table_holds_every_old_builder():
    assert sorted(models.DEPRECATED_BUILDERS) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_old_builder_warns_and_builds_what_build_fcn_builds(name):
    old = getattr(models, name)
    backbone = models.DEPRECATED_BUILDERS[name][0]
    variant, options = CASES[name]
    assert old.__name__ == name
    assert list(inspect.signature(old).parameters) == OLD_PARAMETERS
    assert old.__doc__.startswith("Deprecated (0.1.x): ``build_fcn(variant, num_classes, ..., "
                                  f"backbone={backbone!r})``")
    with pytest.warns(DeprecationWarning, match=rf"^{name} is deprecated \(a 0.1.x builder\); "
                      rf"use build_fcn\(variant, num_classes, \.\.\., backbone='{backbone}'\)"):
        model = old(variant, 3, (40, 40, 3), None, 0.5, False, False, None, **options)
    new = build_fcn(variant, 3, (40, 40, 3), None, 0.5, False, False, backbone, **options)
    assert (model.backbone, model.variant, model.name) == (backbone, variant, new.name)
    assert [w.path for w in model.weights] == [w.path for w in new.weights]
    rng = np.random.default_rng(0)  # positive, so batch-norm variances stay valid
    weights = [rng.uniform(0.1, 1.0, size=w.shape).astype("float32") for w in new.weights]
    model.set_weights(weights)
    new.set_weights(weights)
    image = rng.normal(size=(1, 40, 40, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(new(image, training=False))  # no predict() tracing
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(image, training=False)),
                               expected, rtol=1e-5, atol=1e-5)


def test_the_warning_points_at_the_callers_line():
    with pytest.warns(DeprecationWarning) as caught:
        models.build_vgg16_fcn("32s", 2, (32, 32, 3), None, 0.5, False, False,
                               widths=(4, 4, 8, 8, 8), fc_units=8)
    assert caught[0].filename == __file__
