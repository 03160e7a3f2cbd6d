"""The backend-neutral core, checked on whichever Keras backend this process runs.

Not collected by the default run (no ``test_`` prefix): tests/test_backends.py runs this module
under ``KERAS_BACKEND=jax`` and ``KERAS_BACKEND=torch`` in subprocesses (Keras fixes its backend
at import), and its own process runs it under TensorFlow. Every check compares with numpy.
Set ``KERAS_FCN_BLOCK_TF=1`` to run with TensorFlow made unimportable (a JAX/PyTorch machine);
``KERAS_FCN_SAVE_DIR`` names a folder where a trained model is saved for the cross-backend check.
"""

import os
import sys

if os.environ.get("KERAS_FCN_BLOCK_TF") == "1":
    sys.modules["tensorflow"] = None  # `import tensorflow` now fails, as on a machine without it

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402

import keras_fcn  # noqa: E402
from keras_fcn import layers, losses, metrics, training  # noqa: E402
from keras_fcn.training import consistency  # noqa: E402

C = 3
RNG = np.random.default_rng(0)


def _np(x):
    return ops.convert_to_numpy(x)


def _labels(shape, ignore=255, rng=RNG):
    labels = rng.integers(0, C, shape).astype("int32")
    labels[rng.random(shape) < 0.2] = ignore
    return labels


def _reference_ce(labels, logits, ignore, class_weights=None, label_smoothing=0.0):
    """Numpy softmax cross-entropy, weighted mean over the valid pixels."""
    z = logits.astype("float64")
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    valid = labels != ignore
    safe = np.where(valid, labels, 0)
    ce = lse - np.take_along_axis(z, safe[..., None], -1)[..., 0]
    ce = (1 - label_smoothing) * ce + label_smoothing * (lse - z.mean(-1))
    w = valid.astype("float64")
    if class_weights is not None:
        w *= np.asarray(class_weights)[safe]
    return (ce * w).sum() / w.sum()


def test_tensorflow_state_matches_the_request():
    blocked = os.environ.get("KERAS_FCN_BLOCK_TF") == "1"
    assert (sys.modules.get("tensorflow") is None) == blocked
    with pytest.raises(ImportError, match="needs TensorFlow") if blocked else _nothing():
        keras_fcn.make_dataset  # noqa: B018


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


@pytest.mark.parametrize("class_weights,smoothing", [(None, 0.0), ((0.5, 2.0, 1.0), 0.1)])
def test_loss_equals_numpy(class_weights, smoothing):
    logits = RNG.normal(0, 2, (2, 5, 7, C)).astype("float32")
    labels = _labels((2, 5, 7))
    loss = losses.SparseCategoricalCrossentropyIgnore(
        num_classes=C, class_weights=class_weights, label_smoothing=smoothing)
    got = float(_np(loss(labels, logits)))
    assert got == pytest.approx(_reference_ce(labels, logits, 255, class_weights, smoothing),
                                rel=1e-5)


def test_loss_rejects_out_of_range_labels_eagerly():
    labels = np.zeros((1, 2, 2), "int32")
    labels[0, 1, 1] = 7
    with pytest.raises(ValueError, match="label value: 7"):
        losses.sparse_categorical_crossentropy_ignore(labels, np.zeros((1, 2, 2, C), "float32"))


def test_streaming_metrics_equal_numpy():
    metric = metrics.ConfusionMatrixMetric(C, ignore_label=255)
    total = np.zeros((C, C), "int64")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        labels = _labels((2, 6, 5), rng=rng)
        logits = rng.normal(size=(2, 6, 5, C)).astype("float32")
        metric.update_state(labels, logits)
        total += metrics.confusion_matrix(labels, logits.argmax(-1), C, 255)
    np.testing.assert_array_equal(_np(metric.confusion_matrix()), total)
    expected = metrics.segmentation_metrics(total)
    got = {k: float(_np(v)) for k, v in metric.results().items() if k != "per_class_iu"}
    for key, value in got.items():
        assert value == pytest.approx(expected[key], abs=1e-6), key


def test_non_finite_logits_make_every_score_nan_and_empty_batches_count_nothing():
    labels = _labels((2, 4, 5))
    logits = RNG.normal(size=(2, 4, 5, C)).astype("float32")
    metric = metrics.MeanIU(C)
    metric.update_state(labels, logits)
    assert np.isfinite(float(metric.result()))
    logits[1, 2, 3] = np.nan  # a diverged model: argmax would call the pixel class 0
    labels[1, 2, 3] = 1
    metric.update_state(labels, logits)
    assert np.isnan(float(metric.result()))
    empty_labels, empty_logits = np.zeros((0, 4, 5), "int32"), np.zeros((0, 4, 5, C), "float32")
    assert float(losses.sparse_categorical_crossentropy_ignore(empty_labels, empty_logits)) == 0.0
    assert not _np(metrics.confusion_matrix_tensor(empty_labels, empty_logits, C)).any()


def test_confusion_counts_keep_single_pixels_past_float32_integers():
    """Past 2**24 a plain float32 sum no longer adds single pixels (2**24 + 1 rounds back);
    the count (float64, or float32 with compensation on JAX) keeps every one of them."""
    metric = metrics.ConfusionMatrixMetric(2, ignore_label=None)
    labels = np.zeros((1, 1 << 12, 1 << 10), "int32")  # 2**22 pixels a batch
    for _ in range(4):
        metric.update_state(labels, labels)
    for _ in range(100):
        metric.update_state(labels[:, :1, :1], labels[:, :1, :1])
    assert np.float32(1 << 24) + np.float32(1) == np.float32(1 << 24)  # what is at stake
    assert int(_np(metric.confusion_matrix())[0, 0]) == (1 << 24) + 100


def test_one_batch_of_more_than_2_24_pixels_a_cell_is_counted_exactly():
    """A batch's pixels were summed in float32 (JAX without x64, and Keras-torch's
    segment_sum whatever the dtype), which stopped at 2**24 a cell: 4097 x 4097 pixels of
    class 0 counted 16,777,216, and a 6000 x 6000 image scored a wrong pixel accuracy."""
    labels = np.zeros((1, 4097, 4097), "int32")
    preds = labels.copy()
    preds[0, :, :7] = 1
    metric = metrics.ConfusionMatrixMetric(2, metric="pixel_accuracy", ignore_label=None)
    metric.update_state(labels, preds)
    metric.update_state(labels[:, :1, :3], preds[:, :1, :3])
    expected = [[4097 * 4090, 4097 * 7 + 3], [0, 0]]  # the 3 pixels more: predicted 1
    np.testing.assert_array_equal(_np(metric.confusion_matrix()), expected)
    assert float(_np(metric.result())) == pytest.approx(expected[0][0] / (4097 * 4097 + 3))


def test_lrn_equals_numpy():
    x = RNG.normal(size=(1, 3, 4, 7)).astype("float32") * 30
    size, alpha, beta, k = 5, 1e-3, 0.75, 2.0
    padded = np.pad(x.astype("float64") ** 2, [(0, 0)] * 3 + [(2, 2)])
    window = sum(padded[..., i:i + 7] for i in range(size))
    expected = x / (k + alpha / size * window) ** beta
    got = _np(layers.LocalResponseNormalization(size, alpha, beta, k)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_warp_bilinear_equals_numpy():
    images = RNG.normal(size=(2, 5, 6, 3)).astype("float32")
    flow = RNG.uniform(-1.5, 1.5, (2, 5, 6, 2)).astype("float32")
    got = _np(consistency.warp_bilinear(images, flow))
    y, x = np.mgrid[0:5, 0:6].astype("float64")
    for n in range(2):
        sx = np.clip(x + flow[n, ..., 0], 0, 5)
        sy = np.clip(y + flow[n, ..., 1], 0, 4)
        x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        x1, y1 = np.minimum(x0 + 1, 5), np.minimum(y0 + 1, 4)
        wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
        img = images[n]
        expected = ((img[y0, x0] * (1 - wx) + img[y0, x1] * wx) * (1 - wy)
                    + (img[y1, x0] * (1 - wx) + img[y1, x1] * wx) * wy)
        np.testing.assert_allclose(got[n], expected, atol=1e-5)


def test_symmetric_kl_is_zero_for_equal_and_positive_otherwise():
    p = ops.softmax(RNG.normal(size=(1, 3, 3, C)).astype("float32"))
    q = ops.softmax(RNG.normal(size=(1, 3, 3, C)).astype("float32"))
    valid = np.ones((1, 3, 3), bool)
    assert float(_np(consistency.symmetric_kl(p, p, valid))) == pytest.approx(0.0, abs=1e-7)
    pn, qn = _np(p).astype("float64"), _np(q).astype("float64")
    expected = ((pn - qn) * (np.log(pn) - np.log(qn))).sum(-1).mean()
    assert float(_np(consistency.symmetric_kl(p, q, valid))) == pytest.approx(expected, rel=1e-5)


def _tiny_fcn(num_classes=C, include_preprocessing=False):
    model = keras_fcn.build_fcn("8s", num_classes=num_classes, weights=None,
                                widths=(4, 4, 8, 8, 8), fc_units=8, dropout=0.0,
                                include_preprocessing=include_preprocessing)
    rng = np.random.default_rng(1)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        layer = model.get_layer(name)
        layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                           for w in layer.get_weights()])
    return model


def _squares(count, size=32, seed=0):
    """Images with a bright square on a dark background; label 1 inside, 0 outside, a void
    border of 255 between (a task a tiny FCN learns in a few steps)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (count, size, size, 3)).astype("float32")
    masks = np.zeros((count, size, size), "int32")
    for n in range(count):
        top, left = rng.integers(2, size // 2, 2)
        side = int(rng.integers(8, size // 2))
        images[n, top:top + side, left:left + side] += 150
        masks[n, top:top + side, left:left + side] = 1
        masks[n, top - 1, left:left + side] = 255
    return images, masks


def test_fit_and_evaluate_agree_with_numpy(tmp_path, monkeypatch):
    """A short real fit through keras_fcn.training (the recipes' compile and fit), then the
    Keras metrics and `evaluate_model` against the numpy confusion matrix of the predictions."""
    monkeypatch.delenv("KERAS_FCN_JIT", raising=False)  # the default path (conftest: XLA off)
    model = _tiny_fcn(2, include_preprocessing=True)  # raw RGB in, as the recipes train
    training.compile_model(model, num_classes=2, ignore_label=255,
                           optimizer=training.make_optimizer("adam", 3e-3))
    # compiled by default on every backend: XLA on JAX (jit_compile=False ran JAX eagerly)
    assert model.jit_compile is (keras.backend.backend() == "jax")
    images, masks = _squares(8)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(images, masks, batch_size=4, epochs=3, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    logs = model.evaluate(images, masks, batch_size=4, verbose=0, return_dict=True)
    preds = _np(model.predict(images, verbose=0)).argmax(-1)
    expected = metrics.segmentation_metrics(metrics.confusion_matrix(masks, preds, 2, 255))
    assert logs["mean_iu"] == pytest.approx(expected["mean_iu"], abs=1e-5)
    report = training.evaluate_model(model, [(images[:4], masks[:4]), (images[4:], masks[4:])],
                                     num_classes=2, ignore_label=255, verbose=0)
    assert report["mean_iu"] == pytest.approx(expected["mean_iu"], abs=1e-6)
    assert report["num_images"] == 8
    save_dir = os.environ.get("KERAS_FCN_SAVE_DIR")
    if save_dir:
        model.save(os.path.join(save_dir, f"{keras.backend.backend()}.keras"))
        np.save(os.path.join(save_dir, f"{keras.backend.backend()}_logits.npy"),
                _np(model.predict(images[:2], verbose=0)))
        np.save(os.path.join(save_dir, "images.npy"), images[:2])


def test_consistency_trainer_loss_is_base_plus_weighted_term():
    fcn = _tiny_fcn()
    trainer = training.add_consistency(fcn, 0.25, kind="kl+ce")
    trainer.compile(optimizer="adam",
                    loss=losses.SparseCategoricalCrossentropyIgnore(num_classes=C))
    images = RNG.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    masks = _labels((2, 16, 16))
    flow = RNG.uniform(-1, 1, (2, 16, 16, 2)).astype("float32")
    valid = np.ones((2, 16, 16), bool)
    y_pred = trainer(images)
    base = trainer.compute_loss(x=images, y=masks, y_pred=y_pred[:2], training=False)
    term = consistency.consistency_loss(y_pred[:2], y_pred[2:], flow, valid, "kl+ce")
    total = trainer.compute_loss(x=images, y=(masks, flow, valid), y_pred=y_pred,
                                 training=False)
    assert float(_np(total)) == pytest.approx(float(_np(base)) + 0.25 * float(_np(term)),
                                              rel=1e-5)
    before = [w.copy() for w in fcn.get_weights()]

    def batches():  # pairs: 4 images, 2 masks and 2 flows a batch (numpy arrays cannot say so)
        while True:
            yield images, (masks, flow, valid)

    history = trainer.fit(batches(), steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, fcn.get_weights()))

    def bad_flows():  # flows of half the images' size: the step fails as it is traced
        while True:
            yield images, (masks, flow[:, :8, :8], valid)

    trained = fcn.get_weights()
    with pytest.raises(Exception):  # noqa: B017 (each backend words the shape error its way)
        trainer.fit(bad_flows(), steps_per_epoch=1, epochs=1, verbose=0)
    # On JAX Keras' trainer had cleared every weight: get_weights raised a TypeError
    assert all(np.array_equal(a, b) for a, b in zip(trained, fcn.get_weights()))


def test_fast_path_of_this_backend():
    path = keras_fcn.runtime.fast_path("float32", {"isa": ("avx2",), "gpu": False},
                                       environ={})
    backend = keras.backend.backend()
    assert path["jit_compile"] is (backend == "jax")
    assert path["conv_matmul"] is (backend == "tensorflow")


@pytest.mark.parametrize("variant", ["8s", "8s_at_once"])
def test_logits_equal_the_pytorch_port(variant):
    """The same random weights in the project's PyTorch FCN port (benchmarks/torch_fcn.py) and
    in keras_fcn give the same logits on this backend, at odd sizes."""
    torch = pytest.importorskip("torch")
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "torch_fcn.py")
    spec = importlib.util.spec_from_file_location("benchmarks_torch_fcn", path)
    torch_fcn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_fcn)
    widths, fc_units = (4, 6, 8, 10, 12), 16
    reference = torch_fcn.randomize(torch_fcn.TorchFCN(variant, C, widths, fc_units), seed=3)
    model = keras_fcn.build_fcn(variant, num_classes=C, weights=None, widths=widths,
                                fc_units=fc_units)
    weights = keras_fcn.convert_torch_state_dict(reference.state_dict())
    assert set(keras_fcn.set_weights_by_name(model, weights)) == set(weights)
    for height, width in ((17, 23), (67, 93)):
        images = RNG.uniform(-1, 1, (1, height, width, 3)).astype("float32")
        with torch.no_grad():
            want = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
        want = want.numpy().transpose(0, 2, 3, 1)
        got = _np(model(images, training=False))
        scale = np.abs(want).max()
        assert got.shape == want.shape and scale > 0
        assert np.abs(got - want).max() <= 1e-4 * scale, (height, width)


def _input_gradient(function, x):
    """d sum(function(x)) / dx on this backend, as numpy."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: ops.sum(function(t)))(x))
    if backend == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        ops.sum(function(t)).backward()
        return t.grad.numpy()
    import tensorflow as tf

    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        total = ops.sum(function(t))
    return tape.gradient(total, t).numpy()


@pytest.mark.parametrize("pool,strides,padding,shape", [
    (2, 2, "same", (2, 7, 9, 3)), (2, 2, "valid", (1, 9, 8, 2)), (3, 3, "same", (2, 11, 13, 2)),
    ((2, 3), (2, 3), "valid", (1, 8, 10, 1)), (3, 2, "same", (1, 9, 9, 2)),
    (3, 1, "same", (1, 9, 9, 2)), (3, 2, "valid", (2, 9, 8, 2)), (3, 3, "same", (1, 11, 10, 2)),
    (2, 2, "same", (1, 1, 5, 2))])
def test_max_pooling_equals_keras_with_its_gradient_bit_for_bit(pool, strides, padding, shape):
    """keras_fcn.layers.MaxPooling2D (the mask gradient on JAX, no layout copy on PyTorch) =
    keras.layers.MaxPooling2D: values and input gradients, on integer-valued inputs full of
    ties (the gradient goes to each window's first maximum)."""
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, shape).astype("float32")
    ours = layers.MaxPooling2D(pool, strides=strides, padding=padding)
    keras_own = keras.layers.MaxPooling2D(pool, strides=strides, padding=padding)
    out_shape = tuple(_np(keras_own(x)).shape)
    weights = rng.standard_normal(out_shape).astype("float32")
    np.testing.assert_array_equal(_np(ours(x)), _np(keras_own(x)))
    gradient = _input_gradient(lambda t: ops.multiply(ours(t), weights), x)
    np.testing.assert_array_equal(
        gradient, _input_gradient(lambda t: ops.multiply(keras_own(t), weights), x))
    # and against numpy: each window's gradient at its first maximum
    if padding == "valid" and pool == strides == 2:
        expected = np.zeros_like(x)
        for b, i, j, c in np.ndindex(out_shape):
            window = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
            di, dj = np.unravel_index(np.argmax(window), window.shape)
            expected[b, 2 * i + di, 2 * j + dj, c] = weights[b, i, j, c]
        np.testing.assert_array_equal(gradient, expected)


def _conv_gradients(layer, x, weights):
    """(output, d/d input, d/d kernel, d/d bias) of sum(layer(x) * weights), as numpy."""
    if keras.backend.backend() != "torch":
        return (_np(layer(x)), _input_gradient(lambda t: ops.multiply(layer(t), weights), x))
    import torch

    t = torch.tensor(x, requires_grad=True)
    outputs = layer(t)
    ops.sum(ops.multiply(outputs, weights)).backward()
    return (_np(outputs), t.grad.numpy(),
            *[v.value.grad.numpy() for v in layer.trainable_variables])


@pytest.mark.parametrize("options, fast", [
    (dict(kernel_size=3, padding="same"), True),
    (dict(kernel_size=3, padding="valid", strides=2), True),
    (dict(kernel_size=(3, 5), padding="same", dilation_rate=2), True),
    (dict(kernel_size=3, padding="valid", groups=2), True),
    (dict(kernel_size=1, padding="same"), True),
    (dict(kernel_size=2, padding="same"), False),  # more padding after: Keras' own op
    (dict(kernel_size=3, padding="same", strides=2), False)])
def test_conv2d_equals_keras_with_its_gradients_bit_for_bit(options, fast):
    """keras_fcn.layers.Conv2D (channels-last memory as it is on PyTorch, without Keras' two
    layout copies) = keras.layers.Conv2D: outputs and the input, kernel and bias gradients."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 11, 13, 4)).astype("float32")
    ours, keras_own = layers.Conv2D(6, **options), keras.layers.Conv2D(6, **options)
    keras_own.build(x.shape)
    ours.build(x.shape)
    ours.set_weights([rng.standard_normal(w.shape).astype("float32")
                      for w in keras_own.get_weights()])
    keras_own.set_weights(ours.get_weights())
    weights = rng.standard_normal(_np(keras_own(x)).shape).astype("float32")
    for got, expected in zip(_conv_gradients(ours, x, weights),
                             _conv_gradients(keras_own, x, weights), strict=True):
        np.testing.assert_array_equal(got, expected)
    if keras.backend.backend() == "torch":  # the fast path runs where it should
        from keras_fcn import _torch_layout

        covered = _torch_layout.conv2d(x, ours.kernel, ours.strides, ours.padding,
                                       ours.dilation_rate)
        assert (covered is not None) == fast
        if fast:
            np.testing.assert_array_equal(_np(covered), _np(ours.convolution_op(x, ours.kernel)))


def test_the_vgg16_fcn_runs_every_conv_and_pool_without_layout_copies_on_torch():
    """On PyTorch each VGG16 FCN-8s convolution and pool takes the channels-last path (the
    same kernels as Keras' op, minus its copies)."""
    if keras.backend.backend() != "torch":
        pytest.skip("the layout copies are Keras' torch backend's")
    from keras_fcn import _torch_layout

    calls = {"conv2d": 0, "max_pool2d": 0}
    originals = {name: getattr(_torch_layout, name) for name in calls}

    def counted(name):
        def wrapper(*args):
            outputs = originals[name](*args)
            calls[name] += outputs is not None
            return outputs
        return wrapper

    model = keras_fcn.build_fcn("8s", num_classes=C, weights=None, widths=(2, 2, 2, 2, 2),
                                fc_units=4)
    try:
        for name in calls:
            setattr(_torch_layout, name, counted(name))
        model(np.zeros((1, 40, 40, 3), "float32"))
    finally:
        for name, function in originals.items():
            setattr(_torch_layout, name, function)
    assert calls == {"conv2d": 13 + 2 + 3, "max_pool2d": 5}  # trunk, fc6-7, 3 score layers


def test_the_vgg16_fcn_train_gradient_has_no_select_and_scatter_on_jax():
    """On JAX, the VGG16 pools' gradient is keras_fcn's masks (benchmarks/jax_pool_gradient.py),
    not XLA's select-and-scatter, and the model's gradient equals the one through Keras' own
    pooling bit for bit."""
    if keras.backend.backend() != "jax":
        pytest.skip("the mask gradient is the JAX backend's")
    import jax

    model = _tiny_fcn()
    x = RNG.uniform(0, 255, (2, 37, 45, 3)).astype("float32")
    trainable = [v.value for v in model.trainable_variables]
    ours = _gradient_program(jax, model)
    assert "select_and_scatter" not in ours.lower(trainable, x).as_text()
    original = layers.MaxPooling2D.call
    layers.MaxPooling2D.call = keras.layers.MaxPooling2D.call
    try:
        keras_own = _gradient_program(jax, model)
        assert "select_and_scatter" in keras_own.lower(trainable, x).as_text()
        expected = keras_own(trainable, x)
    finally:
        layers.MaxPooling2D.call = original
    for a, b in zip(ours(trainable, x), expected):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _gradient_program(jax, model):
    """A new jitted gradient of sum(logits ** 2) in the trainable weights, given the weights and
    the images (an argument: a constant would be folded). New each time: JAX would reuse a
    trace made before a layer was patched."""
    fixed = [v.value for v in model.non_trainable_variables]

    def total(weights, images):
        return ops.sum(model.stateless_call(weights, fixed, images)[0] ** 2)
    return jax.jit(jax.grad(total))


def test_the_input_padding_stays_out_of_conv1_1_on_jax():
    """On JAX, keras_fcn's ZeroPadding2D (pad1) is an optimization barrier: XLA's optimized
    train gradient keeps conv1_1 a plain 3x3 convolution of the padded input (folded, it is a
    convolution with pad=100, whose kernel gradient compiles for the GPU to an image-sized
    window, benchmarks/jax_gpu_aot.py); the gradients stay Keras' layer's to float round-off."""
    if keras.backend.backend() != "jax":
        pytest.skip("the barrier is the JAX backend's")
    import jax

    model = _tiny_fcn()
    x = RNG.uniform(0, 255, (2, 37, 45, 3)).astype("float32")
    trainable = [v.value for v in model.trainable_variables]

    def folded(program):
        text = program.lower(trainable, x).compile().as_text()
        return [line for line in text.splitlines()
                if "convolution(" in line and "pad=100_100x100_100" in line]

    ours = _gradient_program(jax, model)
    assert folded(ours) == []
    original = layers.ZeroPadding2D.call
    layers.ZeroPadding2D.call = keras.layers.ZeroPadding2D.call
    try:
        keras_own = _gradient_program(jax, model)
        assert len(folded(keras_own)) == 1  # conv1_1's forward, the padding inside
        expected = keras_own(trainable, x)
    finally:
        layers.ZeroPadding2D.call = original
    for a, b in zip(ours(trainable, x), expected):
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5 * np.abs(b).max())


def _compiled(function):
    """``function`` compiled as a train step is on this backend: XLA on TensorFlow
    (``jit_compile=True``) and JAX. On PyTorch, eagerly as ``torch.compile`` sees it (no
    value can be checked; ``torch.compile`` itself takes a minute here)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)

    def traced(*args):
        from keras_fcn import _tf

        concrete = _tf.is_concrete
        _tf.is_concrete = lambda x: False
        try:
            return function(*args)
        finally:
            _tf.is_concrete = concrete

    return traced


@pytest.mark.parametrize("reduction_mode,class_weights", [("mean", None), ("sum", (1, 2, 3))])
def test_compiled_loss_is_nan_for_out_of_range_labels(reduction_mode, class_weights):
    """Where no check can stop the step (XLA), a label outside [0, C) makes the loss NaN;
    XLA folded the NaN at such pixels times their weight 0 away, leaving a finite loss
    without those pixels."""
    logits = RNG.normal(0, 2, (2, 5, 7, C)).astype("float32")
    labels = _labels((2, 5, 7))
    loss = _compiled(lambda y, p: losses.sparse_categorical_crossentropy_ignore(
        y, p, num_classes=C, reduction_mode=reduction_mode, class_weights=class_weights))
    good = float(_np(loss(labels, logits)))
    assert np.isfinite(good)
    if reduction_mode == "mean":
        assert good == pytest.approx(_reference_ce(labels, logits, 255, class_weights), rel=1e-5)
    bad = labels.copy()
    bad[0, 1, 2] = 7
    assert np.isnan(float(_np(loss(bad, logits))))
    if keras.backend.backend() == "torch":
        return  # float labels: eager on PyTorch, where the check raises (the next test)
    for value in (np.nan, 1.5):  # cast to class 0 / rounded to 2 under XLA before
        floats = labels.astype("float32")
        floats[0, 1, 2] = value
        assert np.isnan(float(_np(loss(floats, logits)))), value


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int64"])
def test_every_integer_label_dtype_gives_the_int32_loss(dtype):
    """uint32/uint64 maps were clipped to [INT32.min (wrapped), ...] and refused with a
    made-up value on TensorFlow and JAX."""
    logits = RNG.normal(0, 2, (1, 4, 5, C)).astype("float32")
    labels = _labels((1, 4, 5))
    expected = float(_np(losses.sparse_categorical_crossentropy_ignore(labels, logits,
                                                                      num_classes=C)))
    got = float(_np(losses.sparse_categorical_crossentropy_ignore(labels.astype(dtype), logits,
                                                                 num_classes=C)))
    assert np.isfinite(expected) and got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_labels_past_int32_are_named(dtype):
    """On JAX (no x64) 2**32 + 1 became class 1 before the range check."""
    labels = _labels((1, 4, 5)).astype(dtype)
    labels[0, 1, 1] = 2**32 + 1
    with pytest.raises(ValueError, match="within the int32 range. Received a label value: "
                                         "4294967297"):
        losses.sparse_categorical_crossentropy_ignore(
            labels, RNG.normal(size=(1, 4, 5, C)).astype("float32"), num_classes=C)


def test_a_nan_or_fractional_float_label_is_named_eagerly():
    logits = RNG.normal(0, 2, (1, 3, 4, C)).astype("float32")
    for value, shown in ((np.nan, "nan"), (1.5, "1.5")):
        labels = _labels((1, 3, 4)).astype("float32")
        labels[0, 1, 2] = value
        with pytest.raises(Exception, match="Labels must be whole class ids. Received a label "
                                            f"value: {shown}"):
            losses.sparse_categorical_crossentropy_ignore(labels, logits, num_classes=C)


def test_a_diverged_model_scores_nan_everywhere_on_every_backend():
    """NaN logits at one non-void pixel: the whole confusion matrix is NaN (the argmax of NaN
    differs between backends), and a model whose every logit is NaN scores NaN in the four
    metrics, not a mean IU and mean accuracy of 0.0 (no class 'present')."""
    labels = _labels((2, 4, 5))
    labels[0, 0, 0] = 1
    logits = RNG.normal(size=(2, 4, 5, C)).astype("float32")
    logits[0, 0, 0, 1] = np.nan
    assert np.isnan(_np(metrics.confusion_matrix_tensor(labels, logits, C))).all()
    metric = metrics.ConfusionMatrixMetric(C)
    metric.update_state(labels, np.full_like(logits, np.nan))
    results = {k: _np(v) for k, v in metric.results().items()}
    assert all(np.isnan(v).all() for v in results.values()), results
    assert float(_np(metrics.MeanIU(C).result())) == 0.0  # nothing counted: 0.0, not NaN
    void_nan = np.where((labels == 255)[..., None], np.nan, logits).astype("float32")
    void_nan[0, 0, 0] = 0.0
    expected = metrics.confusion_matrix(labels, np.nan_to_num(void_nan).argmax(-1), C)
    np.testing.assert_array_equal(_np(metrics.confusion_matrix_tensor(labels, void_nan, C)),
                                  expected)  # NaN at void pixels counts nothing


def test_predict_runs_here_and_only_tensorflow_built_names_say_they_need_it():
    """keras_fcn.predict (tiles, flip) runs on every backend, TensorFlow or not: its
    probabilities are the softmax of the model; the export and data names that do need
    TensorFlow name what to use instead."""
    model = _tiny_fcn(include_preprocessing=True)
    image = np.random.default_rng(2).uniform(0, 255, (37, 53, 3)).astype("uint8")
    labels, probs = keras_fcn.predict(model, image)
    logits = _np(model(image[None].astype("float32"), training=False))[0].astype("float64")
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    tiled, _ = keras_fcn.predict(model, image, tile_size=32, tile_overlap=8, tta_flip=True)
    assert tiled.shape == (37, 53)
    if os.environ.get("KERAS_FCN_BLOCK_TF") != "1":
        return
    with pytest.raises(ImportError, match=r"export_tflite needs TensorFlow.*model\.save"):
        keras_fcn.export_tflite  # noqa: B018
    with pytest.raises(ImportError, match="use keras_fcn.data.arrays.SegmentationPyDataset"):
        keras_fcn.load_split  # noqa: B018
    # temporal smoothing runs without TensorFlow (numpy); only the optical-flow measure,
    # which warps with tf, says it needs it
    smoother = keras_fcn.TemporalSmoother(0.25)
    smoother(probs)
    np.testing.assert_allclose(smoother(probs[::-1]), 0.25 * probs[::-1] + 0.75 * probs,
                               rtol=1e-6)
    assert keras_fcn.flicker_rate([labels, labels]) == 0.0
    with pytest.raises(ImportError, match=r"flow_changes \(optical-flow warping\) needs Tens"):
        keras_fcn.inference.flow_changes(labels, labels, np.zeros((37, 53, 2), "float32"))


def test_two_headed_evaluation_equals_numpy(monkeypatch):
    """two_headed.evaluate_segmentation read outputs with np.asarray, which fails on a
    PyTorch tensor that requires grad."""
    from keras_fcn.models import multimodal
    from keras_fcn.training.two_headed import compile_two_headed, evaluate_segmentation

    model = multimodal.build_two_headed_fcn("32s", 4, 3, weights=None, widths=(4, 4, 8, 8, 8),
                                            fc_units=8, dropout=0.0)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    images = rng.uniform(-50, 50, (2, 24, 32, 3)).astype("float32")
    labels = {"semantic": _labels((2, 24, 32), rng=rng), "geometric": _labels((2, 24, 32))}
    results = evaluate_segmentation(model, [(images, labels)], {"semantic": 4, "geometric": 3})
    outputs = model(images, training=False)
    for task, n in (("semantic", 4), ("geometric", 3)):
        preds = _np(outputs[task]).argmax(-1)
        target = labels[task]
        keep = target != 255
        expected = np.bincount(n * target[keep] + preds[keep], minlength=n * n).reshape(n, n)
        np.testing.assert_array_equal(results[task]["confusion_matrix"], expected)
    monkeypatch.delenv("KERAS_FCN_JIT", raising=False)
    compile_two_headed(model, keras.optimizers.SGD(1e-3))
    assert model.jit_compile is (keras.backend.backend() == "jax")


def test_a_resumed_pydataset_run_trains_on_the_batches_of_an_uninterrupted_run(tmp_path):
    """The PyDataset input (epoch-keyed draws) moves on to the backup's epoch on a resume
    (keras_fcn.training.data_order.ResumeDataOrder), on every backend."""
    from resume_order import check_resume_reads_the_uninterrupted_batches, py_data

    check_resume_reads_the_uninterrupted_batches(lambda: py_data(tmp_path / "shapes"), tmp_path)


def _tiny_compiled_fcn(num_classes=C):
    model = keras_fcn.build_fcn("8s", num_classes, weights=None, widths=(4, 4, 8, 8, 8),
                                fc_units=8)
    model.compile(keras.optimizers.Adam(1e-2),
                  loss=losses.SparseCategoricalCrossentropyIgnore(num_classes),
                  metrics=[metrics.MeanIU(num_classes)])
    return model


def test_keras_callbacks_in_auto_mode_maximize_the_mean_iu(tmp_path):
    """EarlyStopping/ModelCheckpoint/ReduceLROnPlateau(monitor="val_mean_iu") refused the
    metric in mode="auto" (it had no direction); the best checkpoint holds the best epoch.
    The metric's direction is the same on every backend: checked on TensorFlow (JAX and
    PyTorch save and load their models in the fit and weight-average cases)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("backend-neutral (the metric's direction): checked on TensorFlow")
    rng = np.random.default_rng(5)
    x = rng.normal(0, 50, (4, 32, 32, 3)).astype("float32")
    y = _labels((4, 32, 32), rng=rng)
    model = _tiny_compiled_fcn()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"),
                                                 monitor="val_mean_iu", save_best_only=True)
    callbacks = [checkpoint, keras.callbacks.EarlyStopping(monitor="val_mean_iu", patience=5),
                 keras.callbacks.ReduceLROnPlateau(monitor="val_mean_iu", patience=5)]
    history = model.fit(x, y, batch_size=2, epochs=3, validation_data=(x, y), verbose=0,
                        callbacks=callbacks)
    assert checkpoint.monitor_op is keras.ops.greater
    best = keras.models.load_model(tmp_path / "best.keras")
    preds = _np(best.predict(x, verbose=0)).argmax(-1)
    expected = metrics.segmentation_metrics(metrics.confusion_matrix(y, preds, C))["mean_iu"]
    assert max(history.history["val_mean_iu"]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("labels, message", [
    (np.full((2, 32, 32), 0.5, "float32"), "whole class id. Received a label value: 0.5"),
    (np.full((2, 32, 32), 3, "int64"), r"in \[0, 3\) .*Received a label value: 3"),
    (np.zeros((2, 32, 32, 3), "int32"), r"shape \(N, H, W\) or \(N, H, W, 1\).*\(2, 32, 32, 3\)"),
])
def test_fit_refuses_bad_label_arrays_on_every_backend(labels, message):
    """On JAX a compiled step cannot raise: a fractional or out-of-range label trained on with
    loss NaN and mean IU 0.0, and (N, H, W, 3) labels failed in broadcasting."""
    x = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=message):
        _tiny_compiled_fcn().fit(x, labels, epochs=1, verbose=0)


def test_labels_of_another_size_are_refused_and_a_failed_first_step_keeps_the_weights(tmp_path):
    """Labels of another height than the images: refused before Keras runs (numpy), and when
    no check sees them (a PyDataset) the loss's refusal in the first compiled step left every
    weight cleared on JAX: get_weights, save and the next fit raised a TypeError."""
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 40, 3)).astype("float32")
    y = np.zeros((2, 32, 40), "int32")
    model = _tiny_compiled_fcn()
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels must cover the images' pixels: \(N, H, W\) = "
                                         r"\(2, 32, 40\)\. Received: y\.shape=\(2, 16, 40\)"):
        model.fit(x, y[:, :16], epochs=1, verbose=0)

    class Short(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x, y[:, :16]

    weights = model.get_weights()
    for call in (lambda: model.fit(Short(), epochs=1, verbose=0),
                 lambda: model.evaluate(Short(), verbose=0)):
        # TensorFlow: a run-time assertion in its graph (InvalidArgumentError)
        with pytest.raises(Exception, match=r"labels and `y_pred` must cover the same"):
            call()
        assert all((a == b).all() for a, b in zip(weights, model.get_weights()))
    assert np.isfinite(model.fit(x, y, epochs=2, verbose=0).history["loss"]).all()
    assert not all((a == b).all() for a, b in zip(weights, model.get_weights()))  # it trained
    model.save(tmp_path / "kept.keras")


def test_fit_refuses_class_weight_and_names_the_loss_argument():
    """Keras' class_weight (one class per sample) failed on label maps with a TypeError."""
    x, y = np.zeros((2, 32, 32, 3), "float32"), np.zeros((2, 32, 32), "int32")
    with pytest.raises(ValueError, match=r"class_weights=\[1.0, 2.0, 1.0\]"):
        _tiny_compiled_fcn().fit(x, y, class_weight={0: 1, 1: 2, 2: 1}, verbose=0)


def test_empty_batches_and_one_channel_images_are_refused_by_name():
    """Keras failed with an UnboundLocalError (predict) or StopIteration (JAX fit)."""
    model = _tiny_compiled_fcn()
    empty = np.zeros((0, 32, 32, 3), "float32")
    for call in (lambda: model.predict(empty, verbose=0),
                 lambda: model.evaluate(empty, np.zeros((0, 32, 32), "int32"), verbose=0),
                 lambda: model.fit(empty, np.zeros((0, 32, 32), "int32"), verbose=0)):
        with pytest.raises(ValueError, match=r"holds no images.*x.shape=\(0, 32, 32, 3\)"):
            call()
    with pytest.raises(ValueError, match=r"images \(N, H, W, 3\).*x.shape=\(1, 32, 32, 1\)"):
        model.predict(np.zeros((1, 32, 32, 1), "float32"), verbose=0)


def test_freezing_the_trunk_trains_the_heads_alone_then_all_but_the_upsampling():
    model = _tiny_compiled_fcn()
    for layer in model.trunk_layers():
        layer.trainable = False
    model.compile(keras.optimizers.SGD(1.0), loss=losses.SparseCategoricalCrossentropyIgnore(C))
    rng = np.random.default_rng(6)
    x = rng.normal(0, 50, (2, 32, 32, 3)).astype("float32")
    y = _labels((2, 32, 32), rng=rng)
    before = {w.path: _np(w) for w in model.weights}
    model.fit(x, y, epochs=1, verbose=0)
    changed = {w.path.split("/")[0] for w in model.weights if not np.array_equal(
        _np(w), before[w.path])}
    assert changed == {"score_fr", "score_pool4", "score_pool3"}
    for layer in model.trunk_layers():
        layer.trainable = True
    model.compile(keras.optimizers.SGD(1e-3), loss=losses.SparseCategoricalCrossentropyIgnore(C))
    before = {w.path: _np(w) for w in model.weights}
    model.fit(x, y, epochs=1, verbose=0)
    changed = {w.path.split("/")[0] for w in model.weights if not np.array_equal(
        _np(w), before[w.path])}
    assert "conv1_1" in changed and not changed & {"upscore2", "upscore_pool4", "upscore8"}


class _BadLabelData(keras.utils.PyDataset):
    """Two batches whose second holds the label 5 of a 2-class model (not the ignore label)."""

    def __init__(self, images, masks):
        super().__init__()
        self.images, self.masks = images, masks.copy()
        self.masks[4:, 0, 0] = 5

    def __len__(self):
        return 2

    def __getitem__(self, index):
        part = slice(4 * index, 4 * index + 4)
        return self.images[part], self.masks[part]


def test_a_bad_label_from_a_data_set_stops_training_and_names_its_cause(tmp_path, capsys):
    """Labels no up-front check saw (a data set of the user's): eager steps (TensorFlow's graph
    assertion, Keras-torch) raise naming the value; a compiled JAX step cannot, its loss is
    NaN, and the NaN stop says what such a label does."""
    from keras_fcn.datasets import shapes

    model = _tiny_fcn(2, include_preprocessing=True)
    training.compile_model(model, num_classes=2, ignore_label=255,
                           optimizer=training.make_optimizer("sgd", 1e-3),
                           jit_compile=keras.backend.backend() == "jax")
    data = _BadLabelData(*_squares(8))
    if keras.backend.backend() != "jax":
        with pytest.raises(Exception, match=r"Labels must be in \[0, 2\) or equal to "
                                            r"ignore_label=255\. Received a label value"):
            training.fit(model, data, None, run_dir=str(tmp_path), epochs=1,
                         info=shapes.SHAPES_INFO, verbose=0)
        return
    report = training.fit(model, data, None, run_dir=str(tmp_path), epochs=1,
                          info=shapes.SHAPES_INFO, verbose=0)
    assert report["status"] == "nan" and report["nan_step"]["batch"] == 2
    assert ("a label outside [0, num_classes) that is not the ignore label gives a NaN loss"
            in capsys.readouterr().err)


def test_data_parallel_trains_and_validates_as_one_device():
    """keras.distribution's DataParallel (strategy='data_parallel', JAX) on the two CPU devices
    the suite gives JAX: the library's compile and fit give one device's losses, and
    validation batches padded with void images (training.distribute.pad_batches) its scores."""
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution's DataParallel is JAX's")
    import jax

    from keras_fcn.training import distribute

    if len(jax.devices()) < 2:
        pytest.skip("one JAX device (XLA_FLAGS=--xla_force_host_platform_device_count=2)")
    images, masks = _squares(8)
    val = [(images[i:i + 1], masks[i:i + 1]) for i in range(3)]  # batch 1: padded to 2
    results = []
    for name in ("default", "data_parallel"):
        strategy = distribute.make_strategy(name, batch_size=4)
        keras.utils.set_random_seed(0)
        model = _tiny_fcn(2, include_preprocessing=True)
        training.compile_model(model, num_classes=2, ignore_label=255,
                               optimizer=training.make_optimizer("sgd", 0.01, momentum=0.9),
                               jit_compile=True)
        _, val_batches = distribute.for_replicas(strategy, None, val, 4, 255)
        history = model.fit(images, masks, batch_size=4, epochs=1, verbose=0, shuffle=False,
                            validation_data=_Batches(val_batches)).history
        results.append((strategy.num_replicas_in_sync, history))
    distribute.make_strategy("default")
    assert keras.distribution.distribution() is None
    (one, single), (two, parallel) = results
    assert (one, two) == (1, 2)
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(parallel["val_mean_iu"], single["val_mean_iu"], rtol=1e-6)
    np.testing.assert_allclose(parallel["val_loss"], single["val_loss"], rtol=1e-5)


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def test_a_model_fit_with_weight_averages_evaluates_and_saves_after(tmp_path):
    """Keras' fit ends by assigning the optimizer's averages (use_ema) to the weights; on JAX
    that shared their buffers, and a compiled evaluate (which donates the weights) deleted the
    averages: saving the model then failed with "Array has been deleted". FCN.fit gives the
    weights buffers of their own (keras_fcn.runtime.detach_weights)."""
    model = _tiny_fcn()
    model.compile(optimizer=keras.optimizers.SGD(0.01, use_ema=True, ema_momentum=0.5,
                                                 ema_overwrite_frequency=None),
                  loss=losses.SparseCategoricalCrossentropyIgnore(ignore_label=255))
    x, y = _squares(4, size=32)
    before = model.get_weights()
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert not np.array_equal(model.get_weights()[0], before[0])  # it trained
    model.evaluate(x, y, batch_size=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    for ours, theirs in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_saved_optimizer_names_its_public_module_on_every_backend():
    """On PyTorch Keras saved "adam" (AdamW) under its backend class's module
    (keras.src.backend.torch.optimizers.torch_adamw): loading the file on TensorFlow or JAX
    imported PyTorch there, and crashed a process holding both (walkthrough, 2026-12-06)."""
    model = keras_fcn.build_fcn("32s", C, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
    for optimizer in (training.make_optimizer("adam", 1e-3),
                      keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e-3))):
        training.compile_model(model, num_classes=C, ignore_label=255, optimizer=optimizer)
        config = model.get_compile_config()["optimizer"]
        assert config["module"] == "keras.optimizers", config["module"]
        inner = config["config"].get("inner_optimizer")
        assert inner is None or inner["module"] == "keras.optimizers", inner["module"]
        restored = keras.optimizers.deserialize(config)
        assert type(restored).__name__ == type(optimizer).__name__


def test_sample_weights_and_labels_of_another_rank_on_one_compiled_model():
    """Per-pixel, then per-image weights (and back), then (N, H, W, 1) labels on one compiled
    model give numpy's weighted loss and pixel accuracy in fit and evaluate. On TensorFlow the
    second rank retraced the step with an input of unknown rank, and the loss failed with
    "Cannot take the length of shape with unknown rank" (walkthrough, 2026-12-06); JAX and
    PyTorch retrace per shape."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 5, 2)).astype("float32")
    y = _labels((4, 6, 5), rng=rng)
    inputs = keras.Input((6, 5, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(C, 1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=losses.SparseCategoricalCrossentropyIgnore(num_classes=C),
                  weighted_metrics=[metrics.PixelAccuracy(C)])
    logits = _np(model(x)).astype("float64")
    lse = np.log(np.exp(logits).sum(-1))
    valid = y != 255
    safe = np.where(valid, y, 0)
    ce = lse - np.take_along_axis(logits, safe[..., None], -1)[..., 0]
    correct = logits.argmax(-1) == y
    pixel = rng.uniform(0.1, 2.0, (4, 6, 5)).astype("float32")
    image = rng.uniform(0.1, 2.0, (4,)).astype("float32")
    for weights in (pixel, image, pixel[..., None]):
        w = valid * np.broadcast_to(weights.reshape(4, -1, 1) if weights.ndim == 1 else
                                    weights.reshape(4, 6, 5), (4, 6, 5))
        expected = [(ce * w).sum() / w.sum(), (correct * w).sum() / w.sum()]
        fit = model.fit(x, y, sample_weight=weights, batch_size=4, epochs=1, verbose=0,
                        shuffle=False).history
        got = model.evaluate(x, y, sample_weight=weights, batch_size=4, verbose=0)
        np.testing.assert_allclose([fit["loss"][0], fit["pixel_accuracy"][0]], expected,
                                   rtol=1e-5, err_msg=str(weights.shape))
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=str(weights.shape))
    got = model.evaluate(x, y[..., None], sample_weight=weights, batch_size=4, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg="labels (N, H, W, 1)")


def test_consistency_trainer_is_not_refused_under_data_parallel():
    """The one-replica check of the consistency trainer (a tf.distribute strategy splits the
    pairs of a batch) lets JAX's DataParallel through: it runs one program over the whole batch
    (the walkthrough of 2026-12-06 matched one device's losses). Compile only: a fit here
    costs two XLA compiles of the warp, ~20 s on the suite's CPUs."""
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution's DataParallel is JAX's")
    import jax

    from keras_fcn.training import distribute

    if len(jax.devices()) < 2:
        pytest.skip("one JAX device (XLA_FLAGS=--xla_force_host_platform_device_count=2)")
    strategy = distribute.make_strategy("data_parallel", batch_size=4)
    try:
        assert strategy.num_replicas_in_sync == 2
        inputs = keras.Input((None, None, 3))
        trainer = training.add_consistency(
            keras.Model(inputs, keras.layers.Conv2D(C, 1)(inputs)), 0.5)
        training.compile_model(trainer, num_classes=C, ignore_label=255,
                               optimizer=training.make_optimizer("sgd", 0.1))
        consistency.check_one_replica(trainer)
    finally:
        distribute.make_strategy("default")


def test_jax_warns_once_when_every_new_input_size_compiles_the_forward_pass():
    """On JAX the predict step compiles again for each new input size (the helper's folder of
    12 photo sizes: 27 s to evaluate against 9 s on TensorFlow), silently before; past
    MAX_XLA_SHAPES sizes one RuntimeWarning names the cure. TensorFlow falls back to its graph
    and PyTorch runs eagerly: no warning there. The scores stay the model's."""
    import warnings

    from keras_fcn.inference.forward import MAX_XLA_SHAPES, forward_fn

    model = _tiny_fcn()
    forward = forward_fn(model, output="logits")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for size in range(16, 16 + 2 * (MAX_XLA_SHAPES + 1), 2):  # one size past the limit
            images = RNG.uniform(-1, 1, (1, size, size, 3)).astype("float32")
            np.testing.assert_allclose(_np(forward(images)), _np(model(images)), atol=1e-5)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
                and "compiles the forward pass" in str(w.message)]
    assert len(messages) == (keras.backend.backend() == "jax"), messages
    if messages:
        assert messages[0].startswith(f"JAX compiles the forward pass again for every input "
                                      f"size ({MAX_XLA_SHAPES + 1} sizes so far")


def test_compile_model_refuses_a_compiled_step_on_torch_only():
    """compile_model(jit_compile=True) on PyTorch crashed at the first step inside dynamo
    ("cannot determine truth value of Relational"); the CLI refused it already."""
    model = keras_fcn.build_fcn("32s", C, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
    compile_it = lambda: training.compile_model(  # noqa: E731
        model, num_classes=C, ignore_label=255, optimizer=training.make_optimizer("sgd", 1e-3),
        jit_compile=True)
    if keras.backend.backend() != "torch":
        assert compile_it().jit_compile is True
        return
    with pytest.raises(ValueError, match=r"^jit_compile=True is not supported on the PyTorch"):
        compile_it()
