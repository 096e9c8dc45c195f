"""Reading signature images of any common kind into one grey float array, with clear errors."""

import struct
import warnings
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ParameterError

#: Version of how images are read: raised whenever the same file would read differently
#: (2: EXIF orientation applied, large images reduced; 3: shaded paper evened out), so cached
#: features are not reused.
READER_VERSION = 3
#: Largest image (width x height) read by default; a larger one is refused before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
#: Bytes that decoding may take per allowed pixel: an image whose full decode (pixels x
#: channels x bytes per channel) costs more than ``max_pixels`` times this is refused from its
#: header: an 8-bit colour image may have as many pixels as the limit, a 16-bit grey one as many,
#: an RGBA or 32-bit one three quarters of them.
DECODE_BYTES_PER_PIXEL = 3
#: Pixels an image is reduced to (by block averaging, or by JPEG's own scaled decoding) before
#: any further work: a signature ends as a 128 x 256 canvas, and a 40-megapixel scan handled
#: at full size cost gigabytes of float arrays.
WORKING_PIXELS = 4_000_000
#: Smallest side, in pixels, of an image that can hold a signature.
MIN_SIDE = 24
#: The image formats read, an explicit list: Pillow's other decoders (EPS, which runs
#: Ghostscript, among them) are never reached whatever a file's name or first bytes say.
FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM")
#: The EXIF tag of the orientation the camera was held in.
EXIF_ORIENTATION = 0x0112
# Bytes per channel of Pillow's modes (the rest hold one byte per channel).
_CHANNEL_BYTES = {"I": 4, "F": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decode_cost(image):
    """Bytes a Pillow image takes decoded at its (possibly drafted) size: pixels x channels x bytes."""
    width, height = image.size
    return width * height * len(image.getbands()) * _CHANNEL_BYTES.get(image.mode, 1)


def read_grey(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Read an image file as grey levels in [0, 1] (0 black ink, 1 white paper).

    Grey, palette, RGB, RGBA (composited on white), 16-bit and 32-bit images in the formats of
    ``FORMATS`` are accepted; a multi-page file gives its first page. The EXIF orientation is
    applied (a phone photo taken sideways reads upright). An image of more than
    ``WORKING_PIXELS`` is read reduced by a whole factor (each side divided alike).

    Parameters
    ----------
    path : path-like
    max_pixels : int > 0
        Images with more pixels than this, or whose decoding would take more than
        ``DECODE_BYTES_PER_PIXEL`` bytes per allowed pixel, are refused from their header
        alone, before any pixel data is decoded, so a small compressed "decompression bomb"
        cannot fill memory.

    Returns
    -------
    numpy.ndarray of float32, shape (height, width) (reduced for a large image)

    Raises
    ------
    DataError
        The file is missing, not an image of an allowed format, truncated, too small or over
        ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    from inkvoice.core.files import check_input_file

    path = Path(path)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise ParameterError(f"max_pixels must be a positive integer; got {max_pixels!r}")
    check_input_file(path, what="image file")  # not a FIFO, device or link loop; bounded size
    # Pillow's own bomb check is replaced by ours, which the user can raise.
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                image = Image.open(path, formats=FORMATS)
            except UnidentifiedImageError:
                raise DataError(f"{path}: not an image file (no known image format; read are "
                                f"{', '.join(FORMATS)})") from None
            except (OSError, ValueError, SyntaxError) as error:
                raise DataError(f"{path}: unreadable image ({error})") from None
            with image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DataError(
                        f"{path}: image of {width}x{height} = {width * height} pixels is over the limit of "
                        f"{max_pixels} pixels (raise the limit if the file is trusted)"
                    )
                if min(width, height) < MIN_SIDE:
                    raise DataError(
                        f"{path}: image of {width}x{height} pixels is too small to hold a signature "
                        f"(each side needs at least {MIN_SIDE} pixels)"
                    )
                try:
                    factor = _reduction(width, height)
                    if factor > 1 and image.format == "JPEG":
                        image.draft(image.mode, (width // factor, height // factor))  # decoded scaled down
                    cost, allowed = decode_cost(image), max_pixels * DECODE_BYTES_PER_PIXEL
                    if cost > allowed:
                        raise DataError(
                            f"{path}: decoding this {width}x{height} {image.mode} image would take {cost} bytes, over "
                            f"the limit of {allowed} ({DECODE_BYTES_PER_PIXEL} per allowed pixel; raise the pixel "
                            "limit if the file is trusted)"
                        )
                    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
                    image.load()
                    image = _reduced(image, _reduction(*image.size))
                    image = _upright(image, orientation)
                    grey = _to_grey(image)
                except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
                    raise DataError(f"{path}: truncated or damaged image ({error})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit
    if not np.all(np.isfinite(grey)):
        raise DataError(f"{path}: image holds {int(np.sum(~np.isfinite(grey)))} NaN or infinite pixel value(s)")
    return grey


def _reduction(width, height):
    """The whole factor that brings ``width`` x ``height`` to at most ``WORKING_PIXELS`` (1: none)."""
    factor = int(np.ceil(np.sqrt(width * height / WORKING_PIXELS)))
    return max(1, min(factor, min(width, height) // MIN_SIDE))


def _upright(image, orientation):
    """``image`` turned as its EXIF ``orientation`` says it was meant to be seen (as ``ImageOps.exif_transpose``)."""
    from PIL import Image

    turn = Image.Transpose
    method = {2: turn.FLIP_LEFT_RIGHT, 3: turn.ROTATE_180, 4: turn.FLIP_TOP_BOTTOM, 5: turn.TRANSPOSE,
              6: turn.ROTATE_270, 7: turn.TRANSVERSE, 8: turn.ROTATE_90}.get(orientation)
    return image if method is None else image.transpose(method)


def _reduced(image, factor):
    """A loaded image shrunk by ``factor`` by block averaging (modes Pillow cannot reduce converted first)."""
    if factor <= 1:
        return image
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.reduce(factor)


def _to_grey(image):
    """Grey levels in [0, 1] from a loaded Pillow image of any mode."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            return values.astype(np.float32)  # refused by the caller, naming the file
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(float(values.max(initial=1.0)), 1.0) if values.max(initial=0) > 1 else 1.0
        return np.clip(values / top, 0.0, 1.0).astype(np.float32)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info) or "A" in mode:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # transparent parts are white paper
        return _luminance(rgb)
    if mode != "RGB":
        if mode in ("1", "L"):
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        image = image.convert("RGB")
    return _luminance(np.asarray(image, dtype=np.float32) / 255.0)


def _luminance(rgb):
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
