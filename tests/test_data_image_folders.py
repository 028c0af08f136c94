"""Tests of metaprune.data.image_folders: reading root/class_name/*.png trees."""

import numpy as np
import pytest
from PIL import Image

from metaprune.data.image_folders import IMAGE_EXTENSIONS, load_image_folder


def _write_png(path, size=(6, 4), mode="RGB", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)


def test_load_image_folder(tmp_path):
    _write_png(tmp_path / "zebra" / "b.png", value=30)
    _write_png(tmp_path / "zebra" / "a.png", value=20)
    _write_png(tmp_path / "ant" / "x.png", mode="L", value=99)
    _write_png(tmp_path / "ant" / "deeper" / "y.PNG", value=5)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    data = load_image_folder(tmp_path)
    assert data.class_names == ("ant", "zebra")
    assert data.images.shape == (4, 4, 6, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    # sorted file order inside a class: ant/deeper/y.PNG, ant/x.png, zebra/a.png, zebra/b.png
    assert data.images[0, 0, 0, 0] == 5
    assert tuple(data.images[1, 0, 0]) == (99, 99, 99)  # grey converted to RGB
    assert data.images[2, 0, 0, 0] == 20 and data.images[3, 0, 0, 0] == 30


def test_load_image_folder_resize_and_size_mismatch(tmp_path):
    _write_png(tmp_path / "a" / "1.png", size=(6, 4))
    _write_png(tmp_path / "b" / "2.jpg", size=(10, 12))
    with pytest.raises(ValueError, match="pass image_size"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, image_size=8).images.shape == (2, 8, 8, 3)
    assert load_image_folder(tmp_path, image_size=(5, 7)).images.shape == (2, 5, 7, 3)
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(tmp_path, image_size=(0, 3))


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    _write_png(tmp_path / "full" / "1.png")
    with pytest.raises(ValueError, match=r"\['empty_class'\] hold no images"):
        load_image_folder(tmp_path)
    (tmp_path / "empty_class" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken.png: cannot read the image"):
        load_image_folder(tmp_path)


def test_image_extensions_are_lower_case_suffixes():
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    assert ".png" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS
