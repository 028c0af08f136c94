"""Images into a network safely: one memory layout for every tensor the kernels see.

Every array or tensor that metaprune hands to torch goes through :func:`image_tensor`
(or, for networks, :func:`standard_format_`), so the kernels only ever see float32,
C-contiguous NCHW batches and contiguous weights, whatever the caller passed: C or
Fortran order, channels-last views, negative strides, read-only arrays, memmaps, other
float dtypes, tensors. This is a safety boundary, not only a convenience: torch's CPU
backward of a strided 1x1 convolution on channels-last batches with fewer than 8 input channels
(oneDNN's ``jit_avx2_1x1_convolution_bwd_weights``) writes past its buffer and corrupts
the heap; pruned networks have exactly such convolutions (see ``docs/decisions.md`` and
``benchmarks/repro_onednn_1x1_bwd_weights.py``).

:func:`forward_batches` is the one batched forward loop (eval or train mode, the
module's mode restored afterwards) that feature, scoring, recalibration and prediction
passes share.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["image_array", "image_tensor", "tensor_to_numpy", "canonical_strides", "in_memory_format",
           "standard_format_", "training_memory_format", "module_mode", "forward_batches"]


def image_array(X, dtype=np.float32) -> np.ndarray:
    """``X`` as a writable, aligned, C-contiguous NumPy array of ``dtype`` (copied only if needed).

    Parameters
    ----------
    X : array-like or torch.Tensor
        Any layout or float dtype; memmaps and read-only arrays are copied into memory.
    dtype : numpy dtype, default=float32

    Returns
    -------
    numpy.ndarray
        A plain ``ndarray`` (never a subclass) whose strides are the C-order strides.
    """
    if isinstance(X, torch.Tensor):
        X = tensor_to_numpy(X)
    return np.require(np.asarray(X), dtype=dtype, requirements=["C", "A", "W"])


def tensor_to_numpy(X: torch.Tensor) -> np.ndarray:
    """A CPU NumPy copy or view of a tensor of any dtype, device, conjugate or negative bit.

    Dtypes NumPy lacks (bfloat16, float8...) are widened to float32.
    """
    X = X.detach().to("cpu").resolve_conj().resolve_neg()
    try:
        return X.numpy()
    except TypeError:  # e.g. bfloat16
        return X.to(torch.float32).numpy()


def image_tensor(X) -> torch.Tensor:
    """``X`` as a float32 C-contiguous CPU tensor (the layout every kernel is safe with).

    NumPy input is shared without a copy where it already has that layout; tensors are
    detached and copied only where their dtype, device or strides differ.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().to(device="cpu", dtype=torch.float32).resolve_conj().resolve_neg().contiguous()
    else:
        X = torch.from_numpy(image_array(X))
    return canonical_strides(X)


def in_memory_format(X: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``X`` in ``memory_format``; for ``torch.contiguous_format`` with canonical strides."""
    X = X.contiguous(memory_format=memory_format)
    return canonical_strides(X) if memory_format == torch.contiguous_format else X


def canonical_strides(X: torch.Tensor) -> torch.Tensor:
    """A C-contiguous tensor with the C-order strides also on its size-1 dimensions (no copy).

    NumPy and torch call ``(n, 1, H, W)`` with strides ``(H*W, 1, W, 1)`` contiguous,
    but torch's ``suggest_memory_format`` reads those strides as channels-last and runs
    every convolution after it in that format. Size-1 dimensions never move in memory,
    so their strides can be rewritten freely.
    """
    strides, step = [], 1
    for size in reversed(X.shape):
        strides.append(step)
        step *= max(size, 1)
    strides = tuple(reversed(strides))
    if X.stride() == strides:
        return X
    if not X.is_contiguous():
        raise ValueError("canonical_strides needs a contiguous tensor")
    return X.as_strided(X.shape, strides)


def standard_format_(module: nn.Module) -> nn.Module:
    """Make every parameter and buffer of ``module`` C-contiguous, in place; returns ``module``.

    Undoes ``module.to(memory_format=torch.channels_last)`` (and any other strides), so
    convolutions run their NCHW kernels.
    """
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if not tensor.is_contiguous():
                tensor.data = tensor.data.contiguous()
    return module


def training_memory_format(module: nn.Module, device) -> torch.memory_format:
    """The memory format to train ``module`` in: channels-last only where it is proven safe.

    Channels-last training steps of a CIFAR ResNet-18 are ~30% faster on CPU, but
    oneDNN's strided 1x1 convolution backward overruns its buffer on channels-last
    inputs with 1-7 channels (found with valgrind; 8, 12, 13, 16 and 32 were clean
    on AVX2). Channels-last is therefore used on CPU only when every strided 1x1
    convolution has a multiple of 16 input channels (the SIMD width of AVX-512, so the
    rule holds for both instruction sets) and no convolution is grouped or depthwise
    (checked in the standard format only), and never on other devices (not measured).
    """
    if torch.device(device).type != "cpu":
        return torch.contiguous_format
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    strided_1x1 = [m for m in convs if tuple(m.kernel_size) == (1, 1) and tuple(m.stride) != (1, 1)]
    # grouped and depthwise convolutions (MobileNets, RegNets, stacks of tasks) were checked with
    # valgrind in the standard format only
    safe = all(m.in_channels % 16 == 0 for m in strided_1x1) and all(m.groups == 1 for m in convs)
    return torch.channels_last if safe else torch.contiguous_format


@contextmanager
def module_mode(module: nn.Module, training: bool):
    """Put ``module`` in train or eval mode for the block; restore its mode afterwards."""
    was_training = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was_training)


def forward_batches(module: nn.Module, X, batch_size: int, device=None, training: bool = False,
                    transform=None):
    """Yield ``(start, batch)`` pairs: ``X`` cut into float32 C-contiguous batches on ``device``.

    The module is in eval mode (train mode with ``training=True``) while the caller
    consumes the batches, and back in its own mode when the generator ends or is closed.
    Callers that need no gradients run under :func:`torch.no_grad` themselves.

    Parameters
    ----------
    module : torch.nn.Module
    X : array-like or torch.Tensor of shape (n, C, H, W)
        Any shape ``transform`` accepts when it is given.
    batch_size : int
    device : str or torch.device, optional
        Defaults to the module's device.
    training : bool, default=False
    transform : callable, optional
        ``transform(X[start:start + batch_size])`` makes each batch from a slice of ``X`` as
        given (e.g. uint8 NHWC images converted and normalised one batch at a time, so the
        whole set is never held as float32); its result then goes through
        :func:`image_tensor`. Without it ``X`` goes through :func:`image_tensor` once, whole.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else next(module.parameters()).device
    if transform is None:
        X = image_tensor(X)
    with module_mode(module, training):
        for start in range(0, len(X), batch_size):
            batch = X[start:start + batch_size]
            if transform is not None:
                batch = image_tensor(transform(batch))
            yield start, batch.to(device)
