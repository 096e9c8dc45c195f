"""Drawn signatures for tests: a pen trajectory stamped on paper of a chosen grey level."""

import numpy as np
from PIL import Image


def stroke_mask(height=120, width=300, seed=0, wobble=0.0):
    """Boolean ink mask of a looping pen stroke; ``seed`` picks the shape, ``wobble`` varies it."""
    rng = np.random.default_rng(seed)
    shape_rng = np.random.default_rng(seed + 1000)
    t = np.linspace(0, 1, 1500)
    freqs = rng.uniform(2, 7, 3)
    phases = rng.uniform(0, 6.3, 3)
    y = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs * (1 + wobble * shape_rng.normal(0, 0.05, 3)), phases))
    x = t * 0.8 + 0.05 * np.cos(2 * np.pi * rng.uniform(4, 8) * t)
    rows = (height / 2 - y / 3.5 * height * 0.4).astype(int)
    columns = (width * 0.1 + x * width * 0.8).astype(int)
    mask = np.zeros((height, width), dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            mask[np.clip(rows + dr, 0, height - 1), np.clip(columns + dc, 0, width - 1)] = True
    return mask


def page(mask, paper=0.92, ink=0.15, noise=0.01, seed=0):
    """Grey page in [0, 1] with ``mask`` drawn in ink on paper of grey level ``paper``."""
    rng = np.random.default_rng(seed)
    grey = np.where(mask, ink, paper) + rng.normal(0, noise, mask.shape)
    return np.clip(grey, 0, 1)


def save_page(path, grey, mode="L"):
    """Write a grey page as an image file in ``mode`` (L, P, RGB, RGBA, I;16); returns the path."""
    eight_bit = (grey * 255).round().astype(np.uint8)
    if mode == "I;16":
        Image.fromarray((grey * 65535).round().astype(np.uint16)).save(path)
    elif mode == "RGBA":
        rgba = np.dstack([eight_bit] * 3 + [np.full_like(eight_bit, 255)])
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        Image.fromarray(eight_bit, "L").convert(mode).save(path)
    return path
