"""Max pooling over non-overlapping windows on the JAX backend, with its gradient written as
masks instead of XLA's select-and-scatter (imported by `keras_fcn.layers.MaxPooling2D` on
JAX only).

The gradient is the one JAX derives for ``lax.reduce_window(max)``, bit for bit: each window's
incoming gradient goes to its *first* maximum in row-major order (XLA's select-and-scatter
with ``>=``), ties included. Written as one comparison per window position it is an
elementwise program that XLA fuses; the select-and-scatter is a loop over each window. On a
2-core CPU the value-and-gradient of a narrow VGG16 FCN-8s (widths 16..128, batch 4, 180x240)
took 1.03 s instead of 1.17 s (benchmarks/results/jax_pool_gradient.md).
"""

import jax
import jax.numpy as jnp
from jax import lax


def _pool(x, size, padding):
    window = (1, *size, 1)
    return lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), lax.max, window, window,
                             padding)


def max_pool(x, size, padding):
    """Max pool of NHWC ``x`` over ``size`` windows with stride ``size`` ("SAME" or "VALID"),
    as ``lax.reduce_window`` (the forward is the same op), with the mask gradient."""
    size = tuple(int(s) for s in size)

    @jax.custom_vjp
    def pooled(x):
        return _pool(x, size, padding)

    def forward(x):
        y = _pool(x, size, padding)
        return y, (x, y)

    def backward(saved, grad):
        return (_first_max_gradient(*saved, grad, size, padding),)

    pooled.defvjp(forward, backward)
    return pooled(x)


def _first_max_gradient(x, y, grad, size, padding):
    batch, height, width, channels = x.shape
    rows, cols = y.shape[1], y.shape[2]
    kh, kw = size
    if padding == "SAME":  # XLA pads (rows * kh - height) // 2 before; -inf never wins
        top, left = (rows * kh - height) // 2, (cols * kw - width) // 2
        covered = jnp.pad(x, ((0, 0), (top, rows * kh - height - top),
                              (left, cols * kw - width - left), (0, 0)),
                          constant_values=-jnp.inf)
    else:  # "VALID": the last rows/columns that fill no window get no gradient
        top = left = 0
        covered = x[:, :rows * kh, :cols * kw]
    windows = covered.reshape(batch, rows, kh, cols, kw, channels)
    taken = jnp.zeros(y.shape, bool)
    zero = jnp.zeros((), grad.dtype)
    parts = []
    for i in range(kh):
        row = []
        for j in range(kw):
            first = (windows[:, :, i, :, j, :] == y) & ~taken
            taken = taken | first
            row.append(jnp.where(first, grad, zero))
        parts.append(jnp.stack(row, axis=3))  # (batch, rows, cols, kw, channels)
    spread = jnp.stack(parts, axis=2).reshape(batch, rows * kh, cols * kw, channels)
    if padding == "SAME":
        spread = spread[:, top:top + height, left:left + width]
    else:
        spread = jnp.pad(spread, ((0, 0), (0, height - rows * kh), (0, width - cols * kw),
                                  (0, 0)))
    return spread.astype(x.dtype)
