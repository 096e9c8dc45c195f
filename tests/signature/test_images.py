"""Reading images of every common kind, and one clear error for each kind of bad file."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inkvoice.core.errors import DataError
from inkvoice.signature.images import read_grey
from inkvoice.signature.preprocess import preprocess
from tests.signature.helpers import page, save_page, stroke_mask


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("P", ".png"), ("RGB", ".png"), ("RGBA", ".png"),
                                          ("I;16", ".png"), ("L", ".jpg"), ("RGB", ".tif"), ("1", ".png")])
def test_every_mode_reads_as_the_same_grey_page(tmp_path, mode, suffix):
    grey = page(stroke_mask(), noise=0.0)
    path = save_page(tmp_path / f"page{suffix}", grey, mode)
    read = read_grey(path)
    assert read.shape == grey.shape and read.dtype == np.float32
    assert 0.0 <= read.min() and read.max() <= 1.0
    tolerance = 0.5 if mode == "1" else 0.08  # bilevel and JPEG pages are approximations
    assert np.mean(np.abs(read - grey)) < tolerance
    canvas, _ = preprocess(path)
    assert canvas.max() > 0.5


def test_transparent_background_counts_as_white_paper(tmp_path):
    mask = stroke_mask()
    rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
    rgba[mask, 3] = 255  # black ink, fully transparent elsewhere
    path = tmp_path / "transparent.png"
    Image.fromarray(rgba, "RGBA").save(path)
    grey = read_grey(path)
    assert grey[~mask].min() > 0.99 and grey[mask].max() < 0.01


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels")
    with pytest.raises(DataError, match="notes.png: not an image"):
        read_grey(path)


def test_truncated_file(tmp_path):
    path = save_page(tmp_path / "cut.png", page(stroke_mask()))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png: truncated or damaged"):
        read_grey(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such image file"):
        read_grey(tmp_path / "absent.png")


def test_too_small(tmp_path):
    path = save_page(tmp_path / "tiny.png", np.full((10, 40), 0.9))
    with pytest.raises(DataError, match="tiny.png: image of 40x10 pixels is too small"):
        read_grey(path)


def test_blank_page(tmp_path):
    path = save_page(tmp_path / "blank.png", page(np.zeros((100, 200), dtype=bool), noise=0.02))
    with pytest.raises(DataError, match="blank.png: blank page"):
        preprocess(path)


def test_a_negative_is_refused_as_such(tmp_path):
    path = save_page(tmp_path / "negative.png", 1 - page(stroke_mask()))
    with pytest.raises(DataError, match="negative.png: light marks on a dark page"):
        preprocess(path)


def test_pixel_limit_is_checked_before_decoding_and_can_be_raised(tmp_path):
    # 8000 x 8000 white pixels compress to a small file but would take 64 MB decoded.
    path = tmp_path / "bomb.png"
    Image.new("L", (8000, 8000), 255).save(path)
    assert path.stat().st_size < 200_000
    with pytest.raises(DataError, match="bomb.png: image of 8000x8000 = 64000000 pixels is over the limit"):
        read_grey(path, max_pixels=10_000_000)
    # read reduced, each side divided alike (see the decode-cost tests below)
    assert read_grey(path, max_pixels=64_000_000).shape == (2000, 2000)


def test_a_file_of_another_format_is_never_decoded_whatever_its_name(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", lambda self, *a, **k: opened.append(self))
    path = tmp_path / "scan.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 300 120\nnewpath 10 10 moveto 290 110 lineto "
                     b"stroke showpage\n%%EOF\n")
    with pytest.raises(DataError, match="scan.png: not an image file"):
        read_grey(path)
    assert not opened


def test_exif_orientation_is_applied(tmp_path):
    grey = page(stroke_mask(), noise=0.0)
    stored = Image.fromarray((np.rot90(grey) * 255).round().astype(np.uint8), "L")  # held sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "phone.png"
    stored.save(path, exif=exif)
    read = read_grey(path)
    assert read.shape == grey.shape
    assert np.mean(np.abs(read - grey)) < 0.01


@pytest.mark.parametrize("mode", ["RGB", "I;16"])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_a_large_scan_is_read_reduced_within_bounded_memory(tmp_path, mode):
    import subprocess
    import sys

    from PIL import ImageDraw

    side = 6324  # under the 40-megapixel limit; an RGBA one once took 1.9 GB and 17 s, a 16-bit one 1 GB
    image = Image.new(mode, (side, side), (255, 255, 255) if mode == "RGB" else 65535)
    ImageDraw.Draw(image).line([(500, 3000), (5800, 3400)], fill=(0, 0, 0) if mode == "RGB" else 0, width=40)
    path = tmp_path / "scan.png"
    image.save(path)
    del image
    # VmHWM is this program's own peak: ru_maxrss would carry the forking test process's size across exec.
    script = ("import re, sys; from inkvoice.signature.images import read_grey; "
              "grey = read_grey(sys.argv[1]); "
              "peak = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1); "
              "print(grey.shape[0], grey.shape[1], peak)")
    output = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    rows, columns, peak_kb = map(int, output.stdout.split())
    assert rows == columns and rows * columns <= 4_000_000
    assert peak_kb < 500_000, f"reading took {peak_kb / 1000:.0f} MB"


def test_decode_cost_is_bounded_from_the_header(tmp_path):
    side = 6324  # 40 megapixels of 4 channels: 160 MB decoded, over 3 bytes per allowed pixel
    path = tmp_path / "deep.png"
    Image.new("RGBA", (side, side), (255, 255, 255, 255)).save(path)
    with pytest.raises(DataError, match=f"deep.png: decoding this {side}x{side} RGBA image would take "
                                        f"{side * side * 4} bytes, over the limit of 120000000"):
        read_grey(path)
    assert read_grey(path, max_pixels=side * side * 2).shape == (1581, 1581)  # a raised limit reads it, reduced
