"""Read an image-folder tree ``root/class_name/*.png`` (torchvision's ImageFolder layout).

:func:`load_image_folder` decodes every image with Pillow (as RGB, resized on request) and
returns an :class:`~metaprune.data.image_dataset.ImageDataset` whose classes are the sorted
sub-folder names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .image_dataset import ImageDataset

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""File extensions :func:`load_image_folder` reads (case-insensitive)."""


def _as_size(image_size):
    """Return ``image_size`` (int or (h, w)) as a (h, w) tuple of positive ints, or None."""
    if image_size is None:
        return None
    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"image_size must be a positive int or a (height, width) pair, got {image_size!r}")
    return int(size[0]), int(size[1])


def _list_image_folder(root):
    """Return the sorted class names and, per class, its sorted image files."""
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"image folder {root} has no class sub-folders (expected root/class_name/image.png)")
    files = {d.name: sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
             for d in class_dirs}
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise ValueError(f"image folder {root}: class folder(s) {empty} hold no images "
                         f"with an extension in {IMAGE_EXTENSIONS}")
    return [d.name for d in class_dirs], files


def _read_image(path, size):
    """Read one image file as an RGB uint8 (H, W, 3) array, resized to ``size`` = (h, w) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from exc


def load_image_folder(root, image_size=None):
    """Load an image-folder tree ``root/class_name/*.png`` (torchvision's ImageFolder layout).

    Parameters
    ----------
    root : str or path-like
        Folder with one sub-folder per class; images may lie deeper inside a class folder.
        Class ids follow the sorted sub-folder names.
    image_size : int or (int, int), optional
        Resize every image to ``(image_size, image_size)`` or ``(height, width)``
        (bilinear). Without it, all images must already have the same size.

    Returns
    -------
    ImageDataset
        RGB images (N, H, W, 3) uint8, in class order then sorted file order.

    Raises
    ------
    ValueError
        If the folder has no class folders, a class folder holds no images, an image cannot
        be decoded, or images differ in size and ``image_size`` is not given.
    """
    root = Path(root).expanduser()
    size = _as_size(image_size)
    class_names, files = _list_image_folder(root)
    images, labels = [], []
    for label, name in enumerate(class_names):
        for path in files[name]:
            image = _read_image(path, size)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"{path} is {image.shape[1]}x{image.shape[0]} (WxH) but earlier images are "
                    f"{images[0].shape[1]}x{images[0].shape[0]}; pass image_size to resize them all"
                )
            images.append(image)
            labels.append(label)
    return ImageDataset(np.stack(images), np.asarray(labels, dtype=np.int64), class_names)
