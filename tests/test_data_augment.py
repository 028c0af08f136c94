import pytest
import torch

from metaprune.data.augment import BatchAugment, color_jitter, random_grayscale, random_resized_crop_flip


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_shapes_and_range_rgb():
    x = torch.rand(32, 3, 16, 16)
    y = BatchAugment()(x, _gen())
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert torch.isfinite(y).all()


def test_output_size_parameter():
    x = torch.rand(4, 3, 16, 16)
    assert BatchAugment(size=(8, 12))(x, _gen()).shape == (4, 3, 8, 12)


def test_one_channel_images():
    x = torch.rand(8, 1, 16, 16)
    y = BatchAugment()(x, _gen())
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_deterministic_given_generator_seed():
    x = torch.rand(16, 3, 8, 8)
    aug = BatchAugment()
    assert torch.equal(aug(x, _gen(3)), aug(x, _gen(3)))
    assert not torch.equal(aug(x, _gen(3)), aug(x, _gen(4)))


def test_per_image_independence():
    # the same image repeated across the batch must get different augmentations
    x = torch.rand(1, 3, 16, 16).expand(16, -1, -1, -1).contiguous()
    y = BatchAugment()(x, _gen())
    flat = y.reshape(16, -1)
    dist = torch.cdist(flat, flat)
    off_diag = dist[~torch.eye(16, dtype=torch.bool)]
    assert (off_diag > 1e-3).all()


def test_flip_really_flips():
    x = torch.rand(6, 3, 8, 8)
    full = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    y = random_resized_crop_flip(x, _gen(), flip_p=1.0, **full)
    torch.testing.assert_close(y, x.flip(-1), atol=1e-5, rtol=0)
    y = random_resized_crop_flip(x, _gen(), flip_p=0.0, **full)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_flip_probability_mixes():
    x = torch.rand(64, 1, 4, 4)
    y = random_resized_crop_flip(x, _gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.5)
    flipped = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    assert (flipped | same).all()
    assert 10 < int(flipped.sum()) < 54


def test_crop_zooms_in():
    # a crop of a quarter of the area of a horizontal ramp spans a narrower range of values
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(4, 1, 32, 32).contiguous()
    y = random_resized_crop_flip(ramp, _gen(), scale=(0.25, 0.25), ratio=(1.0, 1.0), flip_p=0.0)
    span = y.amax(dim=(1, 2, 3)) - y.amin(dim=(1, 2, 3))
    assert (span < 0.6).all() and (span > 0.4).all()


def test_grayscale_all_and_none():
    x = torch.rand(8, 3, 4, 4)
    g = random_grayscale(x, _gen(), p=1.0)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
    assert torch.equal(random_grayscale(x, _gen(), p=0.0), x)
    one = torch.rand(8, 1, 4, 4)
    assert torch.equal(random_grayscale(one, _gen(), p=1.0), one)


def test_jitter_p0_identity_and_hue_preserves_gray():
    x = torch.rand(8, 3, 4, 4)
    assert torch.equal(color_jitter(x, _gen(), p=0.0), x)
    gray = torch.rand(8, 1, 4, 4).expand(-1, 3, -1, -1).contiguous() * 0.5 + 0.25
    y = color_jitter(gray, _gen(), brightness=0, contrast=0, saturation=0, hue=0.5, p=1.0)
    torch.testing.assert_close(y, gray, atol=1e-4, rtol=0)


def test_hue_changes_colour_keeps_luma():
    x = torch.rand(8, 3, 4, 4) * 0.4 + 0.3  # away from clipping
    y = color_jitter(x, _gen(), brightness=0, contrast=0, saturation=0, hue=0.5, p=1.0)
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert not torch.allclose(y, x, atol=1e-3)
    # YIQ rotation keeps Y exactly when nothing clips
    unclipped = ((y > 0) & (y < 1)).all(dim=1, keepdim=True)
    luma_y = (y * w).sum(1, keepdim=True)[unclipped]
    luma_x = (x * w).sum(1, keepdim=True)[unclipped]
    torch.testing.assert_close(luma_y, luma_x, atol=1e-4, rtol=0)


def test_rejects_bad_input():
    aug = BatchAugment()
    with pytest.raises(ValueError):
        aug(torch.rand(3, 8, 8), _gen())
    with pytest.raises(TypeError):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), _gen())
