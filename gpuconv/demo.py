"""``gpuconv demo``: the source documents' classic filters and max-pooling, run by gpuconv.

Applies, as cross-correlations with ``padding='valid'`` (every output sees a full window):

* Sobel x and Sobel y (seed 001): vertical / horizontal edge detectors;
* the left-neighbour difference ``[-1, 1]`` of seed 002 (each pixel minus its left
  neighbour: a 320-wide image gives 319-wide vertical edges);
* a 3x3 box blur (the mean of each 3x3 window);

then 2x2 max-pooling to the input and each map, and writes a PNG grid of them with titles.
The image is a file you name (Pillow, or matplotlib's reader for PNG) or a built-in synthetic
one. The ops run on the gpuconv backend in force (``--backend`` to choose; default ``auto``,
which computes NumPy arrays with the NumPy reference). Needs ``pip install gpuconv[demo]``.

Example::

    gpuconv demo                      # synthetic image -> gpuconv_demo.png
    gpuconv demo photo.jpg -o edges.png --backend emulator
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import backend
from .functional import conv2d, max_pool2d

# name -> (title, kernel); every kernel is applied as a cross-correlation
FILTERS = {
    "sobel_x": ("Sobel x (vertical edges)",
                np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)),
    "sobel_y": ("Sobel y (horizontal edges)",
                np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32)),
    "left_diff": ("[-1, 1]: pixel - left neighbour", np.array([[-1, 1]], np.float32)),
    "box_blur": ("3x3 box blur", np.full((3, 3), 1 / 9, np.float32)),
}


def synthetic_image(size: int = 64) -> np.ndarray:
    """A (size, size) float32 image in [0, 1] with flat regions and sharp edges.

    On a black background: a white rectangle (rows ``size/8 .. 7*size/16``, columns
    ``size/8 .. 3*size/8``: vertical edges between columns ``size/8 - 1`` and ``size/8``
    and on the right), a grey disk and a checkerboard of 4-pixel squares.

    Example:
        >>> img = synthetic_image(64)
        >>> img.shape, img.dtype, float(img[16, 7]), float(img[16, 8])
        ((64, 64), dtype('float32'), 0.0, 1.0)
    """
    s = size
    img = np.zeros((s, s), np.float32)
    img[s // 8: 7 * s // 16, s // 8: 3 * s // 8] = 1.0  # rectangle
    rows, cols = np.mgrid[:s, :s]
    disk = (rows - 11 * s // 16) ** 2 + (cols - 5 * s // 16) ** 2 <= (s // 6) ** 2
    img[disk] = 0.6
    board = ((rows // 4 + cols // 4) % 2 == 0) & (rows >= 9 * s // 16) & (cols >= 9 * s // 16) \
        & (rows < 15 * s // 16) & (cols < 15 * s // 16)
    img[board] = 0.9
    ramp = img[s // 8: 5 * s // 16, 5 * s // 8: 7 * s // 8]
    ramp[:] = np.linspace(0, 1, ramp.shape[1])  # a horizontal ramp: constant gradient
    return img


def load_image(path, max_size: int = 512) -> np.ndarray:
    """Read an image file as a (H, W) float32 grayscale array in [0, 1].

    Uses Pillow when installed (any format it reads), else matplotlib's ``imread`` (PNG).
    Images larger than ``max_size`` on a side are shrunk to fit.

    Example:
        >>> img = load_image("photo.jpg")      # doctest: +SKIP
        >>> img.ndim, img.dtype                # doctest: +SKIP
        (2, dtype('float32'))
    """
    try:
        from PIL import Image
    except ImportError:
        from matplotlib.image import imread
        img = np.asarray(imread(path), np.float32)
        if img.dtype.kind in "ui" or img.max() > 1:
            img = img / 255.0
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
        step = max(1, -(-max(img.shape) // max_size))
        return np.ascontiguousarray(img[::step, ::step], np.float32)
    with Image.open(path) as im:
        im = im.convert("L")
        im.thumbnail((max_size, max_size))
        return np.asarray(im, np.float32) / 255.0


def compute_maps(image: np.ndarray, log=print) -> dict:
    """Run every filter of :data:`FILTERS` and 2x2 max-pooling through gpuconv's ops.

    Args:
        image: (H, W) float array (H, W >= 4).
        log: called with a progress line per step (``None`` for silence).

    Returns:
        dict of float32 arrays: ``'input'`` (H, W); ``'sobel_x'``, ``'sobel_y'``,
        ``'box_blur'`` (H-2, W-2); ``'left_diff'`` (H, W-1); and for each of these ``name``,
        ``'pool_' + name``: its 2x2 max-pool, half the size (rounded down).

    Example:
        >>> maps = compute_maps(synthetic_image(16), log=None)
        >>> maps["sobel_x"].shape, maps["left_diff"].shape, maps["pool_input"].shape
        ((14, 14), (16, 15), (8, 8))
    """
    log = log or (lambda line: None)
    x = np.ascontiguousarray(image, np.float32)[None, None]  # (N=1, C=1, H, W)
    maps = {"input": x[0, 0]}

    start = time.perf_counter()
    bank = ["sobel_x", "sobel_y", "box_blur"]  # the 3x3 kernels: one conv with K=3
    w = np.stack([FILTERS[name][1] for name in bank])[:, None]  # (K=3, C=1, 3, 3)
    y = conv2d(x, w, padding="valid")
    maps.update({name: y[0, k] for k, name in enumerate(bank)})
    log(f"[1/3] conv2d 3x3, K=3 (Sobel x, Sobel y, box blur): {x.shape} -> {y.shape} "
        f"({time.perf_counter() - start:.2f} s)")

    start = time.perf_counter()
    y = conv2d(x, FILTERS["left_diff"][1][None, None], padding="valid")  # (1, 1, 1, 2) kernel
    maps["left_diff"] = y[0, 0]
    log(f"[2/3] conv2d 1x2 ([-1, 1], left-neighbour difference): {x.shape} -> {y.shape} "
        f"({time.perf_counter() - start:.2f} s)")

    start = time.perf_counter()
    for name in ["input", *FILTERS]:
        maps["pool_" + name] = max_pool2d(maps[name][None, None], 2)[0, 0]
    log(f"[3/3] max_pool2d 2x2 of the input and the 4 maps "
        f"({time.perf_counter() - start:.2f} s)")
    return maps


def render(maps: dict, path, title: str = "gpuconv demo") -> None:
    """Write a PNG grid: row 1 the input and each filter's map, row 2 their 2x2 max-pools.

    Signed maps use a diverging colour map centred on 0 (red positive, blue negative);
    the input and the blur use grey levels. Uses matplotlib's Agg canvas (no display, no
    pyplot state).

    Example:
        >>> render(compute_maps(synthetic_image(), log=None), "demo.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    names = ["input", *FILTERS]
    titles = {"input": "input image", **{n: t for n, (t, _) in FILTERS.items()}}
    fig = Figure(figsize=(3.2 * len(names), 6.8), layout="constrained")
    axes = fig.subplots(2, len(names))
    for col, name in enumerate(names):
        for row, key in enumerate((name, "pool_" + name)):
            a, ax = maps[key], axes[row, col]
            if name in ("input", "box_blur"):
                im = ax.imshow(a, cmap="gray", vmin=0, vmax=max(1.0, float(a.max())))
            else:
                v = float(np.abs(a).max()) or 1.0
                im = ax.imshow(a, cmap="RdBu_r", vmin=-v, vmax=v)
            label = titles[name] if row == 0 else f"max-pool 2x2 of {titles[name].split(' (')[0]}"
            ax.set_title(f"{label}\n{a.shape[0]}x{a.shape[1]}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    """``gpuconv demo [IMAGE] [-o OUT.png] [--backend NAME] [--size N] [--quiet]``.

    Args:
        argv: the arguments after ``demo`` (list of str); ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success (an exit status).

    Example:
        >>> main(["-o", "/tmp/gpuconv_demo.png", "--quiet"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(
        prog="gpuconv demo",
        description="Sobel x/y, the [-1, 1] difference, a box blur and 2x2 max-pooling on an "
                    "image, computed by gpuconv; writes a PNG grid.")
    parser.add_argument("image", nargs="?", help="image file (default: a synthetic image)")
    parser.add_argument("-o", "--output", default="gpuconv_demo.png", help="PNG to write")
    parser.add_argument("--backend", choices=backend.BACKENDS, default=None,
                        help="gpuconv backend (default: the one in force, normally auto)")
    parser.add_argument("--size", type=int, default=128,
                        help="side of the synthetic image; max side of a loaded one is 4x")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.error("the demo needs matplotlib: pip install gpuconv[demo]")

    name = backend.current_backend() if args.backend is None else args.backend
    with backend.use_backend(name):
        if args.image:
            image = load_image(args.image, max_size=4 * args.size)
            source = args.image
        else:
            image = synthetic_image(args.size)
            source = f"synthetic {args.size}x{args.size}"
        log(f"image: {source}, {image.shape[0]}x{image.shape[1]}; gpuconv backend: {name}")
        maps = compute_maps(image, log)
    log(f"drawing the grid into {args.output} ...")
    start = time.perf_counter()
    render(maps, args.output, title=f"gpuconv demo: {source} (backend {name})")
    log(f"wrote {args.output} ({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
