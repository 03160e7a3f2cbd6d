"""Small serializable layers and initializers used by the FCN heads.

Everything here is registered with Keras under the package name ``keras_fcn`` so that
``model.save("x.keras")`` followed by ``keras.models.load_model("x.keras")`` works without
``custom_objects``.
"""

import math
import numbers

import numpy as np
import keras
from keras import ops

from keras_fcn import _tf

# Per-channel mean of the reference models' training images, in BGR order (Caffe VGG16).
FCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)

_PACKAGE = "keras_fcn"


def _is_int(value):
    """An int or numpy integer, not a bool (``True`` is an int to Python)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _finite(name, value):
    """``value`` as a float if it is a finite real number, else a ValueError naming it."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number. Received: {name}={value!r}")
    return float(value)


def _finite_values(name, values, count=3):
    """``values`` as a tuple of ``count`` finite floats, else a ValueError naming them."""
    try:
        floats = tuple(_finite(name, v) for v in values)
    except (TypeError, ValueError):
        floats = None
    if floats is None or len(floats) != count:
        raise ValueError(f"{name} must have {count} finite numbers. Received: {name}={values!r}")
    return floats


def bilinear_kernel(size):
    """Returns the 2-D bilinear interpolation kernel of the reference FCN upsampling layers.

    ``factor = (size + 1) // 2``; ``center = factor - 1`` for odd sizes, ``factor - 0.5`` for
    even ones; ``w(i, j) = (1 - |i - center| / factor) * (1 - |j - center| / factor)``.

    Args:
        size: kernel size in pixels (``2 * stride`` for the FCN layers), a positive integer.

    Returns:
        A float32 numpy array of shape ``(size, size)``.

    Example:
        >>> bilinear_kernel(4)[0]
        array([0.0625, 0.1875, 0.1875, 0.0625], dtype=float32)
    """
    taps = bilinear_taps(size)
    return np.outer(taps, taps).astype("float32")


def bilinear_taps(size):
    """The 1-D taps of :func:`bilinear_kernel` (its kernel is their outer product).

    Example:
        >>> bilinear_taps(4)
        array([0.25, 0.75, 0.75, 0.25])
    """
    if not _is_int(size) or size < 1:
        raise ValueError(f"Kernel size must be a positive integer. Received: size={size!r}")
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - center) / factor


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BilinearUpsampling(keras.initializers.Initializer):
    """Initializes a ``Conv2DTranspose`` kernel to per-channel bilinear upsampling.

    The kernel shape is ``(k, k, channels_out, channels_in)`` (Keras layout) with
    ``channels_out == channels_in``; channel ``c`` maps to channel ``c`` only, all other
    entries are zero, exactly as the reference FCN ``upscore`` layers.
    """

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[0] != shape[1] or shape[2] != shape[3]:
            raise ValueError(
                "BilinearUpsampling needs a square kernel of shape (k, k, C, C). "
                f"Received: shape={tuple(shape)}"
            )
        size, channels = shape[0], shape[2]
        kernel = np.zeros(shape, dtype="float32")
        kernel[:, :, np.arange(channels), np.arange(channels)] = bilinear_kernel(size)[..., None]
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaxPooling2D(keras.layers.MaxPooling2D):
    """``keras.layers.MaxPooling2D`` whose gradient on the JAX backend, for non-overlapping
    windows (``pool_size == strides``, channels last), is written as masks instead of XLA's
    select-and-scatter: the same values and the same gradient bit for bit (each window's
    gradient goes to its first maximum, ties included), a faster train step (VGG16's five
    2x2 pools: 1.13x for a narrow FCN-8s on a 2-core CPU, benchmarks/jax_pool_gradient.py).
    On the PyTorch backend it pools the channels-last tensor in place of Keras' NCHW copy
    (``keras_fcn._torch_layout``; same values and gradients). Every other case, and the
    TensorFlow backend, run Keras' own layer (the TFLite graph keeps its MAX_POOL_2D).

    Example:
        >>> tuple(MaxPooling2D(2, strides=2, padding="same")(np.zeros((1, 5, 5, 3))).shape)
        (1, 3, 3, 3)
    """

    def call(self, inputs):
        if (keras.backend.backend() == "jax" and self.data_format == "channels_last"
                and tuple(self.pool_size) == tuple(self.strides)):
            from keras_fcn import _jax_pool

            return _jax_pool.max_pool(inputs, self.pool_size, self.padding.upper())
        if keras.backend.backend() == "torch" and self.data_format == "channels_last":
            from keras_fcn import _torch_layout

            outputs = _torch_layout.max_pool2d(inputs, self.pool_size, self.strides,
                                               self.padding)
            if outputs is not None:
                return outputs
        return super().call(inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` that on the PyTorch backend convolves channels-last tensors
    without Keras' two layout copies of every input (and of its gradient): PyTorch's kernels
    read NHWC memory as it is (``keras_fcn._torch_layout``). The same values and gradients,
    bit for bit; a faster train step (benchmarks/torch_layout.py). The TensorFlow and JAX
    backends, and what the fast path does not cover ("same" padding with a stride or an even
    kernel), run Keras' own convolution (TFLite graphs keep their CONV_2D).

    Example:
        >>> tuple(Conv2D(4, 3, padding="same")(np.zeros((1, 5, 5, 3))).shape)
        (1, 5, 5, 4)
    """

    def convolution_op(self, inputs, kernel):
        if keras.backend.backend() == "torch" and self.data_format == "channels_last":
            from keras_fcn import _torch_layout

            outputs = _torch_layout.conv2d(inputs, kernel, self.strides, self.padding,
                                           self.dilation_rate)
            if outputs is not None:
                return outputs
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ZeroPadding2D(keras.layers.ZeroPadding2D):
    """``keras.layers.ZeroPadding2D`` for the trunks' large input padding (FCN's 100 pixels,
    ``pad1``) that on the JAX backend keeps the padding out of the next convolution: its
    output goes through ``jax.lax.optimization_barrier``. Folded into conv1_1, as XLA does
    otherwise, the padding turns conv1_1's kernel gradient for the GPU into a cuDNN forward
    convolution with an image-sized window (360x480 for a 360x480 batch) and a 341 MiB
    transpose, instead of cuDNN's backward-filter call (benchmarks/jax_gpu_aot.py: XLA's
    program for an H200, compiled without one). The same values (the padded tensor is
    materialized, ~36 MB for batch 8 at 360x480); other backends run Keras' layer.

    Example:
        >>> tuple(ZeroPadding2D(2)(np.zeros((1, 3, 3, 1))).shape)
        (1, 7, 7, 1)
    """

    def call(self, inputs):
        outputs = super().call(inputs)
        if keras.backend.backend() == "jax":
            import jax

            outputs = jax.lax.optimization_barrier(outputs)
        return outputs


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CropToReference(keras.layers.Layer):
    """Crops ``inputs[0]`` to the spatial size of ``inputs[1]``, starting at a fixed offset.

    This is the reference Caffe ``Crop`` layer (``axis=2``): the window is
    ``x[:, offset:offset + H_ref, offset:offset + W_ref, :]``. When the reference size is
    static (a fixed input size) the slice is static too, which keeps exported TFLite graphs
    free of shape arithmetic.

    Args:
        offset: top-left offset of the window, the same along height and width.
    """

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(offset) or offset < 0:
            raise ValueError(
                f"offset must be a non-negative integer. Received: offset={offset!r}"
            )
        self.offset = int(offset)

    def call(self, inputs):
        x, reference = inputs
        self._check_window(tuple(x.shape), tuple(reference.shape))
        height = reference.shape[1] if reference.shape[1] is not None else ops.shape(reference)[1]
        width = reference.shape[2] if reference.shape[2] is not None else ops.shape(reference)[2]
        o = self.offset
        return x[:, o : o + height, o : o + width, :]

    def _check_window(self, x_shape, ref_shape):
        """Raises when static sizes leave no room for the window: at build for a model of a
        fixed input size (a trunk's offsets that do not fit it), else at the call."""
        o = self.offset
        for axis in (1, 2):
            size, window = x_shape[axis], ref_shape[axis]
            if isinstance(size, int) and isinstance(window, int) and o + window > size:
                raise ValueError(
                    f"Layer {self.name!r} crops a window of {window} at offset {o} along "
                    f"{('height', 'width')[axis - 1]}, but its input has only {size}: the input "
                    f"must be at least offset + reference size ({o + window}). Received: "
                    f"input shape {x_shape}, reference shape {ref_shape}. (An FCN's crop "
                    "offsets are its trunk's: keras_fcn.derive_offsets gives them for a trunk "
                    "of one's own.)")

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        self._check_window(tuple(x_shape), tuple(ref_shape))
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"offset": self.offset})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResizeToReference(keras.layers.Layer):
    """Resizes ``inputs[0]`` bilinearly to the spatial size of ``inputs[1]``.

    Half-pixel centres and no antialiasing: PyTorch's ``F.interpolate(mode="bilinear",
    align_corners=False)``, which torchvision's FCN-ResNet uses to bring its stride-8 scores
    to the input size; TFLite runs it as its builtin ``RESIZE_BILINEAR``. Static when the
    reference size is known, dynamic otherwise.

    Example:
        >>> ResizeToReference()([np.ones((1, 5, 7, 2)), np.zeros((1, 37, 50, 3))]).shape
        TensorShape([1, 37, 50, 2])
    """

    def call(self, inputs):
        x, reference = inputs
        height, width = reference.shape[1], reference.shape[2]
        if height is None or width is None:
            # Only a TensorFlow graph has sizes unknown until it runs (an any-size SavedModel);
            # keras.ops.image.resize takes Python ints, tf.image.resize a size tensor (the same
            # half-pixel bilinear resize).
            import tensorflow as tf

            size = tf.shape(reference)[1:3]
            return tf.cast(tf.image.resize(x, size, method="bilinear", antialias=False), x.dtype)
        return ops.image.resize(x, (height, width), interpolation="bilinear", antialias=False)

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Scale(keras.layers.Layer):
    """Multiplies its input by a fixed factor (the at-once FCN-8s ``scale_pool4``/``scale_pool3``)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = _finite("factor", factor)

    def call(self, inputs):
        return inputs * ops.cast(self.factor, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CaffePreprocessing(keras.layers.Layer):
    """Turns RGB images with values in [0, 255] (any dtype) into the reference model input.

    Casts to float, reverses the channels to BGR and subtracts the per-channel mean of the
    reference models (``FCN_MEAN_BGR``), with no scaling. Putting this layer first makes a
    model that takes raw uint8 RGB images, so exported models need no outside preprocessing.

    Args:
        mean_bgr: per-channel mean in BGR order.
    """

    def __init__(self, mean_bgr=FCN_MEAN_BGR, **kwargs):
        super().__init__(**kwargs)
        self.mean_bgr = _finite_values("mean_bgr", mean_bgr)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        # RGB -> BGR as a gather, not ops.flip: TFLite's REVERSE_V2 does not requantize its
        # output in full int8 (TF 2.21), which wrecked every int8 export (41% agreement).
        x = ops.take(x, [2, 1, 0], axis=-1)
        return x - ops.cast(ops.convert_to_tensor(self.mean_bgr), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean_bgr": list(self.mean_bgr)})
        return config


def preprocess_input(images, mean_bgr=FCN_MEAN_BGR):
    """Prepares RGB images in [0, 255] for the FCN models: RGB -> BGR, mean subtracted.

    Matches the reference Caffe and PyTorch FCN weights (Caffe VGG16 convention, no scaling).

    Args:
        images: array or tensor ``(..., 3)`` of RGB values in [0, 255] (uint8 or float).
        mean_bgr: per-channel mean in BGR order.

    Returns:
        A float32 array (numpy in, numpy out) or tensor of the same shape.

    Example:
        >>> x = preprocess_input(np.full((1, 4, 4, 3), 128, np.uint8))
        >>> x[0, 0, 0]  # B, G, R minus their means
        array([23.993011, 11.33123 ,  5.321083], dtype=float32)
    """
    if not hasattr(images, "shape"):  # a nested list
        images = np.asarray(images)
    if images.ndim == 0 or images.shape[-1] != 3:
        raise ValueError(
            f"preprocess_input expects RGB images with 3 channels last. "
            f"Received: shape={tuple(images.shape)}"
        )
    if isinstance(images, np.ndarray):
        x = images.astype("float32")[..., ::-1]
        return x - np.asarray(mean_bgr, dtype="float32")
    return CaffePreprocessing(mean_bgr, dtype="float32")(images)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Caffe's ``LRN`` layer (``norm_region: ACROSS_CHANNELS``), as in AlexNet and GoogLeNet.

    ``b_c = a_c / (k + alpha / size * sum_{c'} a_{c'}^2) ** beta``, the sum over the ``size``
    channels centred on ``c`` (zeros past the first and last channel). Note the ``alpha /
    size``: Caffe (and ``torch.nn.LocalResponseNorm``) divide ``alpha`` by the window size,
    TensorFlow's ``tf.nn.local_response_normalization`` does not, so it is called with
    ``alpha / size``. It becomes TFLite's builtin ``LOCAL_RESPONSE_NORMALIZATION`` op (float;
    a full-int8 model runs it between ``DEQUANTIZE`` and ``QUANTIZE``). Computed in float32
    under any precision policy.

    Args:
        size: odd window size in channels (``local_size``, 5 in AlexNet and GoogLeNet).
        alpha, beta, k: Caffe's ``alpha`` (1e-4), ``beta`` (0.75) and ``k`` (1).

    Example:
        >>> norm1 = LocalResponseNormalization(5, 1e-4, 0.75, name="norm1")
        >>> y = norm1(np.ones((1, 2, 2, 8), "float32"))
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(size) or size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd integer. Received: size={size!r}")
        self.size = int(size)
        self.alpha, self.beta, self.k = (_finite(n, v) for n, v in
                                         (("alpha", alpha), ("beta", beta), ("k", k)))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if _tf.on_tensorflow():
            # TensorFlow's own op, so that TFLite exports keep the builtin LRN op.
            import tensorflow as tf

            y = tf.nn.local_response_normalization(
                x, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha / self.size,
                beta=self.beta)
        else:
            y = local_response_normalization(x, self.size, self.alpha, self.beta, self.k)
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k})
        return config


def local_response_normalization(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's across-channel LRN written with `keras.ops` (every backend).

    ``x / (k + alpha / size * window_sum(x ** 2)) ** beta``, the window of ``size`` channels
    centred on each channel, zero-padded at the ends: the sum of ``size`` shifted slices of the
    padded squares (exact, no cumulative-sum round-off).

    Args:
        x: float tensor ``(..., C)``, channels last.
        size: odd window size. alpha, beta, k: Caffe's parameters.

    Returns:
        A tensor of the shape and dtype of ``x``.

    Example:
        >>> y = local_response_normalization(np.ones((1, 1, 1, 3), "float32"), size=3)
        >>> np.asarray(y)[0, 0, 0].round(6)  # 1 / (1 + 1e-4 / 3 * n) ** 0.75, n = 2, 3, 2
        array([0.99995 , 0.999925, 0.99995 ], dtype=float32)
    """
    radius = size // 2
    channels = x.shape[-1]
    squares = ops.square(x)
    pad = [[0, 0]] * (len(x.shape) - 1) + [[radius, radius]]
    padded = ops.pad(squares, pad)
    window = padded[..., 0:channels]
    for shift in range(1, size):
        window = window + padded[..., shift:shift + channels]
    return x / ops.power(k + (alpha / size) * window, beta)


# torchvision's ImageNet input normalization (transforms.Normalize after ToTensor), RGB order.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageNetNormalization(keras.layers.Layer):
    """RGB images in [0, 255] (any dtype) -> torchvision's input: ``(x / 255 - mean) / std``.

    The normalization of torchvision's ImageNet classifiers and of its FCN-ResNet models
    (``ToTensor`` then ``Normalize(mean, std)``), per channel in RGB order.

    Args:
        mean_rgb: per-channel mean of the [0, 1] image.
        std_rgb: per-channel standard deviation.

    Example:
        >>> np.asarray(ImageNetNormalization()(np.full((1, 1, 1, 3), 255.0)))[0, 0, 0].round(4)
        array([2.2489, 2.4286, 2.64  ], dtype=float32)
    """

    def __init__(self, mean_rgb=IMAGENET_MEAN_RGB, std_rgb=IMAGENET_STD_RGB, **kwargs):
        super().__init__(**kwargs)
        self.mean_rgb = _finite_values("mean_rgb", mean_rgb)
        self.std_rgb = _finite_values("std_rgb", std_rgb)
        if min(self.std_rgb) <= 0:
            raise ValueError(f"std_rgb must be positive. Received: std_rgb={std_rgb!r}")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        scale = np.float32(1 / 255) / np.asarray(self.std_rgb, "float32")
        offset = np.asarray(self.mean_rgb, "float32") / np.asarray(self.std_rgb, "float32")
        return x * ops.cast(scale, x.dtype) - ops.cast(offset, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean_rgb": list(self.mean_rgb), "std_rgb": list(self.std_rgb)})
        return config
