"""DataLoader on real photos: formats, skipped files, user mistakes, stratified reproducible splits."""
from __future__ import annotations

import concurrent.futures
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device import imaging
from trainer.data import DataError, DataLoader, SkippedFilesWarning


def _folder(root: Path, layout: dict[str, list[Path]]) -> Path:
    for label, files in layout.items():
        (root / label).mkdir(parents=True)
        for file in files:
            shutil.copy(file, root / label / file.name)
    return root


def _odd_formats(photo: Path, folder: Path) -> list[Path]:
    """The same real photo as PNG with alpha, grayscale, CMYK JPEG, BMP, GIF and EXIF-rotated JPEG."""
    folder.mkdir(parents=True)
    rgb = Image.open(photo).convert("RGB").resize((120, 80))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    rgb.convert("L").save(folder / "gray.jpg")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgb.save(folder / "plain.bmp")
    rgb.save(folder / "first-frame.gif", save_all=True, append_images=[rgb.rotate(90)])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the displayed image is 80 wide, 120 high
    rgb.save(folder / "rotated.jpg", exif=exif)
    return sorted(folder.iterdir())


def test_labels_are_the_sorted_sub_folders_and_every_photo_is_kept(flowers_dir):
    data = DataLoader.from_folder(flowers_dir)
    assert data.index_to_label == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert (data.size, len(data), data.num_classes) == (500, 500, 5)
    assert Counter(data.labels.tolist()) == {i: 100 for i in range(5)}
    assert data.skipped == []
    # shuffled once, reproducibly, so labels are mixed for training without a shuffle
    assert len(set(data.labels[:20].tolist())) > 1
    assert data.items == DataLoader.from_folder(flowers_dir).items


def test_odd_formats_stream_as_the_devices_rgb_pixels(photo, tmp_path):
    odd = _odd_formats(photo, tmp_path / "src")
    root = _folder(tmp_path / "data", {"odd": odd, "plain": [photo]})
    data = DataLoader.from_folder(root, shuffle=False)
    assert data.skipped == [] and data.size == len(odd) + 1
    batches = list(data.dataset((32, 48), mean=(127.0,), std=(128.0,), batch_size=4, one_hot=False))
    images = np.concatenate([images.numpy() for images, _ in batches])
    assert images.shape == (data.size, 32, 48, 3) and images.dtype == np.float32
    for image, (path, _) in zip(images, data.items):
        expected = imaging.normalize(imaging.load(path, (32, 48)), (127.0,), (128.0,))
        np.testing.assert_array_equal(image, expected)
    rotated = imaging.decode(tmp_path / "data" / "odd" / "rotated.jpg")
    assert rotated.shape[:2] == (120, 80)


def test_unreadable_files_are_skipped_and_named_in_one_warning(flowers_dir, tmp_path):
    daisies = sorted((flowers_dir / "daisy").glob("*.jpg"))[:3]
    roses = sorted((flowers_dir / "roses").glob("*.jpg"))[:3]
    root = _folder(tmp_path, {"daisy": daisies, "roses": roses})
    (root / "daisy" / "empty.jpg").write_bytes(b"")
    (root / "roses" / "notes.txt").write_text("not a photo")
    (root / "roses" / "cut.jpg").write_bytes(roses[0].read_bytes()[:3000])
    (root / "roses" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with pytest.warns(SkippedFilesWarning) as caught:
        data = DataLoader.from_folder(root)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("skipped 3 of 9 files")
    for name in ("daisy/empty.jpg", "roses/notes.txt", "roses/cut.jpg"):
        assert name in message
    assert data.size == 6
    assert sorted(path for path, _ in data.skipped) == ["daisy/empty.jpg", "roses/cut.jpg", "roses/notes.txt"]


@pytest.mark.filterwarnings("ignore::trainer.data.SkippedFilesWarning")
@pytest.mark.parametrize("layout, message", [
    (None, "not found"),
    ({}, "found 0"),
    ({"daisy": 3}, "found 1"),
    ({"daisy": 3, "roses": 0}, "no readable images for label(s) roses"),
])
def test_folders_that_cannot_be_trained_on_are_one_line_errors(flowers_dir, tmp_path, layout, message):
    root = tmp_path / "data"
    if layout is not None:
        root.mkdir()
        for label, count in layout.items():
            (root / label).mkdir()
            for photo in sorted((flowers_dir / "daisy").glob("*.jpg"))[:count]:
                shutil.copy(photo, root / label)
            if count == 0:
                (root / label / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(DataError) as error:
        DataLoader.from_folder(root)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_split_is_stratified_disjoint_and_reproducible(flowers_dir):
    data = DataLoader.from_folder(flowers_dir)
    first, rest = data.split(0.8, seed=3)
    assert Counter(first.labels.tolist()) == {i: 80 for i in range(5)}
    assert Counter(rest.labels.tolist()) == {i: 20 for i in range(5)}
    assert not set(first.items) & set(rest.items)
    assert sorted(first.items + rest.items) == sorted(data.items)
    assert first.items == data.split(0.8, seed=3)[0].items
    assert first.items != data.split(0.8, seed=4)[0].items
    assert first.index_to_label == rest.index_to_label == data.index_to_label


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_split_fraction_must_be_inside_zero_and_one(flowers_dir, fraction):
    with pytest.raises(DataError, match="between 0 and 1"):
        DataLoader.from_folder(flowers_dir).split(fraction)


def test_an_image_too_large_to_decode_is_skipped_up_front_without_a_raw_warning(photo, tmp_path, monkeypatch):
    small = tmp_path / "small.jpg"
    Image.open(photo).convert("RGB").resize((60, 40)).save(small)
    # PIL warns (and `device.imaging.decode` refuses) above MAX_IMAGE_PIXELS: shrink it, not the test's memory
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    root = _folder(tmp_path / "data", {"daisy": [small], "roses": [small]})
    Image.new("RGB", (150, 90), (10, 200, 30)).save(root / "roses" / "huge.png")  # 1.35 × the limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = DataLoader.from_folder(root)
    assert [warning.category for warning in caught] == [SkippedFilesWarning]
    assert [path for path, _ in data.skipped] == ["roses/huge.png"]
    assert "exceeds limit" in data.skipped[0][1]
    assert data.size == 2


def test_a_16_bit_grayscale_png_keeps_its_tones(tmp_path):
    gradient = np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (4, 1))  # 0, 256, …, 65280
    Image.fromarray(gradient).save(tmp_path / "gradient.png")
    assert Image.open(tmp_path / "gradient.png").mode == "I;16"
    rgb = imaging.decode(tmp_path / "gradient.png")
    assert rgb.shape == (4, 256, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.tile(np.arange(256, dtype=np.uint8), (4, 1)))
    assert (rgb == rgb[..., :1]).all()


@pytest.mark.parametrize("save, expected, tolerance", [
    # 50%-transparent red over nothing: PIL drops alpha, as the Task Library's RGB conversion does
    (lambda path: Image.new("RGBA", (8, 8), (200, 40, 10, 128)).save(path / "alpha.png"), (200, 40, 10), 0),
    (lambda path: Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path / "red.jpg", quality=95),
     (255, 0, 0), 8),
    (lambda path: Image.new("L", (8, 8), 77).save(path / "gray.png"), (77, 77, 77), 0),
    (lambda path: Image.new("RGB", (8, 8), (30, 60, 90)).quantize(4).save(path / "palette.bmp"), (30, 60, 90), 0),
    (lambda path: Image.new("RGB", (8, 8), (0, 0, 255)).save(
        path / "frames.gif", save_all=True, append_images=[Image.new("RGB", (8, 8), (255, 255, 0))]),
     (0, 0, 255), 0),
])
def test_each_format_decodes_to_its_known_colour(tmp_path, save, expected, tolerance):
    save(tmp_path)
    (path,) = tmp_path.iterdir()
    rgb = imaging.decode(path)
    assert rgb.shape == (*Image.open(path).size[::-1], 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - expected).max() <= tolerance, (path.name, rgb[0, 0])


def test_decoding_prints_none_of_pils_warnings(tmp_path):
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] * 128)
    palette.save(tmp_path / "see-through.png", transparency=b"\x00\x80")  # PIL warns when converting it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = imaging.decode(tmp_path / "see-through.png")
    assert caught == []
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_decoding_in_threads_leaves_the_warning_filters_as_they_were(tmp_path):
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] * 128)
    palette.save(tmp_path / "see-through.png", transparency=b"\x00\x80")  # PIL warns when converting it
    before = list(warnings.filters)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda _: imaging.decode(tmp_path / "see-through.png"), range(400)))
    assert warnings.filters == before  # interleaved catch_warnings would leave another thread's filters
    assert all(image[0, 0].tolist() == [255, 0, 0] for image in images)
