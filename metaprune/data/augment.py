"""Batched, vectorised image augmentation for self-supervised pre-training.

Every operation draws independent random parameters for each image of a batch and
applies them with whole-batch tensor operations (no Python loop over images), so the
same code runs on CPU and GPU. All randomness comes from a :class:`torch.Generator`
passed to the call, which makes an augmented batch a pure function of the input batch
and the generator state.

Images are float tensors of shape ``(N, C, H, W)`` with values in ``[0, 1]``
(normalisation happens after augmentation). Colour operations (saturation, hue,
grayscale) need three channels; for other channel counts only the geometric ops,
brightness and contrast are applied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["BatchAugment", "random_resized_crop_flip", "color_jitter", "random_grayscale"]

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale
_LUMA = (0.299, 0.587, 0.114)
_RGB2YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def _uniform(n, low, high, generator, device):
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _gray(x):
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def random_resized_crop_flip(x, generator, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5, size=None):
    """Random resized crop and horizontal flip as one per-image affine resampling.

    Each image gets a crop of area fraction ``U(scale)`` and aspect ratio log-uniform in
    ``ratio`` (side lengths clipped to the image), placed uniformly inside the image,
    mirrored with probability ``flip_p``, and resampled bilinearly to ``size``
    (default: the input size).

    Parameters
    ----------
    x : Tensor (N, C, H, W)
    generator : torch.Generator
    scale, ratio : pair of float
    flip_p : float
    size : pair of int, optional

    Returns
    -------
    Tensor (N, C, H_out, W_out)
        ``(H_out, W_out)`` is ``size``, or the input's size when it is None.
    """
    n = x.shape[0]
    dev = x.device
    out_size = tuple(size) if size is not None else tuple(x.shape[-2:])
    area = _uniform(n, scale[0], scale[1], generator, dev)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, dev)
    r = torch.exp(log_r)
    # crop width / height as fractions of the image side (ratio = w / h)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    # centre in normalised coordinates [-1, 1], keeping the crop inside the image
    cx = (2 * torch.rand(n, generator=generator, device=dev) - 1) * (1 - w)
    cy = (2 * torch.rand(n, generator=generator, device=dev) - 1) * (1 - h)
    flip = torch.rand(n, generator=generator, device=dev) < flip_p
    sx = torch.where(flip, -w, w)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=dev)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (n, x.shape[1], *out_size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(x, generator, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8):
    """Colour jitter with probability ``p`` per image, parameters drawn per image.

    Factors are drawn as in torchvision (``U(1 - s, 1 + s)``, hue shift ``U(-hue, hue)``
    of a full turn) and applied in the fixed order brightness, contrast, saturation,
    hue (torchvision permutes the order randomly; the distribution of jitters is close).
    The hue shift is a rotation of the chroma plane in YIQ space. Values are clipped to
    ``[0, 1]`` after each step. Saturation and hue need 3 channels and are skipped otherwise.
    """
    n, c = x.shape[:2]
    dev = x.device
    shape = (n, 1, 1, 1)
    apply = (torch.rand(n, generator=generator, device=dev) < p).view(shape)
    b = _uniform(n, 1 - brightness, 1 + brightness, generator, dev).view(shape)
    ct = _uniform(n, 1 - contrast, 1 + contrast, generator, dev).view(shape)
    s = _uniform(n, 1 - saturation, 1 + saturation, generator, dev).view(shape)
    hshift = _uniform(n, -hue, hue, generator, dev)
    y = (x * b).clamp(0, 1)
    lum = _gray(y) if c == 3 else y.mean(dim=1, keepdim=True)
    m = lum.mean(dim=(2, 3), keepdim=True)
    y = ((y - m) * ct + m).clamp(0, 1)
    if c == 3:
        g = _gray(y)
        y = ((y - g) * s + g).clamp(0, 1)
        if hue > 0:
            to_yiq = _RGB2YIQ.to(device=dev, dtype=x.dtype)
            to_rgb = torch.linalg.inv(to_yiq)
            ang = 2 * math.pi * hshift
            cos, sin = torch.cos(ang), torch.sin(ang)
            rot = torch.zeros(n, 3, 3, dtype=x.dtype, device=dev)
            rot[:, 0, 0] = 1
            rot[:, 1, 1] = cos
            rot[:, 1, 2] = -sin
            rot[:, 2, 1] = sin
            rot[:, 2, 2] = cos
            mat = to_rgb.unsqueeze(0) @ rot @ to_yiq.unsqueeze(0)  # (n, 3, 3)
            y = torch.einsum("nij,njhw->nihw", mat, y).clamp(0, 1)
    return torch.where(apply, y, x)


def random_grayscale(x, generator, p=0.2):
    """Convert each 3-channel image to grayscale (replicated to 3 channels) with probability ``p``."""
    if x.shape[1] != 3:
        return x
    apply = (torch.rand(x.shape[0], generator=generator, device=x.device) < p).view(-1, 1, 1, 1)
    return torch.where(apply, _gray(x).expand_as(x), x)


class BatchAugment:
    """SimSiam/SimCLR-style augmentation of a whole batch with per-image parameters.

    Pipeline: random resized crop + horizontal flip (one affine resampling), colour
    jitter (probability ``jitter_p``), random grayscale (probability ``grayscale_p``).

    Parameters
    ----------
    scale : pair of float, default (0.2, 1.0)
        Range of the crop's area fraction.
    ratio : pair of float, default (3/4, 4/3)
        Range of the crop's aspect ratio (log-uniform).
    flip_p : float, default 0.5
    brightness, contrast, saturation, hue : float, default 0.4, 0.4, 0.4, 0.1
    jitter_p : float, default 0.8
        Probability of applying colour jitter to an image; 0 disables it.
    grayscale_p : float, default 0.2
    size : pair of int, optional
        Output size; default the input size.

    Examples
    --------
    >>> import torch
    >>> aug = BatchAugment()
    >>> x = torch.rand(4, 3, 16, 16)
    >>> aug(x, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 16, 16])
    """

    def __init__(
        self,
        scale=(0.2, 1.0),
        ratio=(3 / 4, 4 / 3),
        flip_p=0.5,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        jitter_p=0.8,
        grayscale_p=0.2,
        size=None,
    ):
        self.scale = scale
        self.ratio = ratio
        self.flip_p = flip_p
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.jitter_p = jitter_p
        self.grayscale_p = grayscale_p
        self.size = size

    def __call__(self, x, generator):
        """Augment a float batch ``(N, C, H, W)`` in ``[0, 1]``; returns a new tensor."""
        if x.dim() != 4:
            raise ValueError(f"expected a batch of shape (N, C, H, W), got {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"expected a floating-point tensor in [0, 1], got {x.dtype}")
        x = random_resized_crop_flip(x, generator, self.scale, self.ratio, self.flip_p, self.size)
        if self.jitter_p > 0:
            x = color_jitter(
                x, generator, self.brightness, self.contrast, self.saturation, self.hue, self.jitter_p
            )
        if self.grayscale_p > 0:
            x = random_grayscale(x, generator, self.grayscale_p)
        return x

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
