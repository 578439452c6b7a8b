"""Receptive-field arithmetic of stacked dilated convolutions.

A convolution of kernel size k and dilation d widens the receptive field by d * (k - 1) samples,
whether it is centred (padding d * (k - 1) / 2 on each side, keeping the size, as in dilated
image models) or causal (padding d * (k - 1) on the left only, as in WaveNet). A stack therefore
sees ``1 + sum(d * (k - 1))`` input positions along each axis: the current one plus
``sum(d * (k - 1))`` others. For a causal stack those others all lie in the past.
"""

from collections.abc import Sequence


def stack_receptive_field(kernel_size: int, dilations: Sequence[int], dims: int = 1) -> tuple:
    """Receptive field of a stack of dilated convolutions, one entry per axis.

    kernel_size: k (square kernels for dims=2), dilations: one rate per layer, bottom first.
    Returns a tuple of `dims` ints, each ``1 + sum(d * (k - 1))``.

    >>> stack_receptive_field(3, [1, 2, 4], dims=2)
    (15, 15)
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if any(d < 1 for d in dilations):
        raise ValueError(f"dilations must be >= 1, got {list(dilations)}")
    size = 1 + sum(d * (kernel_size - 1) for d in dilations)
    return (size,) * dims


def growth(kernel_size: int, dilations: Sequence[int], dims: int = 1) -> list[tuple]:
    """Receptive field after each layer of the stack: [after layer 1, after layer 2, ...]."""
    return [
        stack_receptive_field(kernel_size, dilations[:n], dims)
        for n in range(1, len(dilations) + 1)
    ]


def same_padding(kernel_size: int, dilation: int) -> int:
    """Per-side padding that keeps the size for a centred (odd-kernel) dilated convolution."""
    span = dilation * (kernel_size - 1)
    if span % 2:
        raise ValueError(f"kernel {kernel_size} at dilation {dilation} has no size-keeping padding")
    return span // 2


def causal_padding(kernel_size: int, dilation: int) -> int:
    """Left padding that keeps the size and makes a dilated convolution causal."""
    return dilation * (kernel_size - 1)
