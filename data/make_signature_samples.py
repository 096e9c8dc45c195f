"""Make the sample signatures in data/signatures/: pen trajectories drawn by a generator.

Each writer has a style: a trajectory of loops and waves (frequencies, amplitudes, slant,
length, pen width, extra strokes such as a dot or an underline). A genuine signature is the
writer's trajectory with small natural variation (timing, size, rotation, slant). A forgery is
made by another writer imitating it: the same trajectory with larger shape errors, a shaky
hand, the forger's own pen width and slant. Scans get varied paper grey levels and noise.

    python data/make_signature_samples.py [--output data/signatures] [--seed 7]

Layout: <output>/writer<N>/genuine/*.png and <output>/writer<N>/forged/*.png.
"""

import argparse
from pathlib import Path

import numpy as np

N_WRITERS = 6
N_GENUINE = 10
N_FORGED = 6
HEIGHT, WIDTH = 120, 300


def writer_style(rng):
    """A writer's stable habits."""
    n_waves = int(rng.integers(2, 5))
    return {
        "frequencies": rng.uniform(1.5, 9.0, n_waves),
        "amplitudes": rng.uniform(0.15, 0.5, n_waves) / np.arange(1, n_waves + 1) ** 0.3,
        "phases": rng.uniform(0, 2 * np.pi, n_waves),
        "loops": rng.uniform(3, 9),
        "loop_size": rng.uniform(0.08, 0.25),
        "slant": rng.uniform(-0.35, 0.35),
        "length": rng.uniform(0.65, 0.95),
        "pen": rng.uniform(1.2, 2.6),
        "underline": bool(rng.random() < 0.5),
        "dot": bool(rng.random() < 0.6),
    }


def trajectory(style, rng, shape_error=0.0, tremor=0.0, n_points=900):
    """Pen positions (x, y) in [0, 1]-ish units for one signature."""
    t = np.linspace(0.0, 1.0, n_points)
    warp = t + 0.02 * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5) + rng.uniform(0, 6.3)) * (1 + 3 * shape_error)
    freqs = style["frequencies"] * (1 + rng.normal(0, 0.01 + shape_error, len(style["frequencies"])))
    amps = style["amplitudes"] * (1 + rng.normal(0, 0.04 + 2 * shape_error, len(style["amplitudes"])))
    phases = style["phases"] + rng.normal(0, 0.05 + 3 * shape_error, len(style["phases"]))
    y = sum(a * np.sin(2 * np.pi * f * warp + p) for a, f, p in zip(amps, freqs, phases))
    loop_phase = 2 * np.pi * style["loops"] * (1 + rng.normal(0, shape_error)) * warp
    x = warp * style["length"] + style["loop_size"] * np.cos(loop_phase) * 0.4
    y = y + style["loop_size"] * np.sin(loop_phase)
    if tremor:
        shake = np.cumsum(rng.normal(0, tremor, (2, n_points)), axis=1)
        shake -= np.linspace(shake[:, :1], shake[:, -1:], n_points, axis=1)[..., 0]
        x, y = x + shake[0] * 0.3, y + shake[1]
    slant = style["slant"] + rng.normal(0, 0.03)
    x = x + slant * y
    angle = rng.normal(0, 0.03)
    scale = rng.normal(1.0, 0.04)
    rotated = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.vstack([x, y])
    return rotated * scale


def draw(canvas, points, pen, ink):
    """Stamp a round pen along ``points`` (pixel coordinates) onto ``canvas``."""
    from skimage.draw import disk

    rows, columns = points
    steps = np.hypot(np.diff(rows), np.diff(columns))
    for i in range(len(rows) - 1):
        n = max(1, int(steps[i] / 0.7))
        for k in range(n):
            r = rows[i] + (rows[i + 1] - rows[i]) * k / n
            c = columns[i] + (columns[i + 1] - columns[i]) * k / n
            rr, cc = disk((r, c), pen, shape=canvas.shape)
            canvas[rr, cc] = np.minimum(canvas[rr, cc], ink)


def render(style, rng, pen, shape_error=0.0, tremor=0.0):
    """One scanned signature as a uint8 grey image."""
    x, y = trajectory(style, rng, shape_error, tremor)
    paper = rng.uniform(0.78, 0.97)
    canvas = np.full((HEIGHT, WIDTH), paper, dtype=np.float32)
    ink = rng.uniform(0.05, 0.3)
    left, middle = rng.uniform(20, 50), HEIGHT / 2 + rng.normal(0, 5)
    size = WIDTH * 0.8
    columns, rows = left + x * size * 0.45 + size * 0.1, middle - y * HEIGHT * 0.35
    draw(canvas, (rows, columns), pen, ink)
    if style["dot"]:
        draw(canvas, (np.array([rows.min() - 8.0, rows.min() - 8.5]),
                      np.array([columns.mean() + 20.0, columns.mean() + 20.5])), pen + 0.5, ink)
    if style["underline"]:
        base = rows.max() + 6 + rng.normal(0, 1)
        line = np.linspace(columns.min(), columns.max(), 60)
        draw(canvas, (base + 2 * np.sin(line / 40.0 + rng.normal(0, 0.2)), line), pen * 0.8, ink)
    canvas += rng.normal(0, 0.008, canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0, 1) * 255).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "signatures",
                        help="folder to write (default: data/signatures next to this script)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args()
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    styles = [writer_style(rng) for _ in range(N_WRITERS)]
    for index, style in enumerate(styles, 1):
        folder = args.output / f"writer{index}"
        for kind in ("genuine", "forged"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
        for n in range(1, N_GENUINE + 1):
            pen = style["pen"] * rng.normal(1.0, 0.05)
            Image.fromarray(render(style, rng, pen)).save(folder / "genuine" / f"{n:02d}.png", optimize=True)
        for n in range(1, N_FORGED + 1):
            forger = styles[(index + n) % N_WRITERS]  # another writer's hand imitates this one
            pen = forger["pen"] * rng.normal(1.0, 0.05)
            image = render(style, rng, pen, shape_error=rng.uniform(0.1, 0.2), tremor=rng.uniform(0.004, 0.008))
            Image.fromarray(image).save(folder / "forged" / f"{n:02d}.png", optimize=True)
    print(f"wrote {N_WRITERS} writers x ({N_GENUINE} genuine + {N_FORGED} forged) to {args.output}")


if __name__ == "__main__":
    main()
