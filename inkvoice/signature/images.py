"""Reading signature images of any common kind into one grey float array, with clear errors."""

import warnings
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ParameterError

#: Largest image (width x height) read by default; a larger one is refused before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
#: Smallest side, in pixels, of an image that can hold a signature.
MIN_SIDE = 24


def read_grey(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Read an image file as grey levels in [0, 1] (0 black ink, 1 white paper).

    Grey, palette, RGB, RGBA (composited on white), 16-bit and 32-bit images in PNG, JPEG,
    TIFF or any format Pillow reads are accepted; a multi-page file gives its first page.

    Parameters
    ----------
    path : path-like
    max_pixels : int > 0
        Images with more pixels than this are refused from their header alone, before any
        pixel data is decoded, so a small compressed "decompression bomb" cannot fill memory.

    Returns
    -------
    numpy.ndarray of float32, shape (height, width)

    Raises
    ------
    DataError
        The file is missing, not an image, truncated, too small or over ``max_pixels``.
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
                image = Image.open(path)
            except UnidentifiedImageError:
                raise DataError(f"{path}: not an image file (no known image format)") from None
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
                    image.load()
                    grey = _to_grey(image)
                except (OSError, ValueError, SyntaxError, EOFError) as error:
                    raise DataError(f"{path}: truncated or damaged image ({error})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit
    if not np.all(np.isfinite(grey)):
        raise DataError(f"{path}: image holds {int(np.sum(~np.isfinite(grey)))} NaN or infinite pixel value(s)")
    return grey


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
