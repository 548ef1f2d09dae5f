"""gpuconv.demo: the filters respond where they should, and the PNG grid is written."""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import demo


def test_maps_on_synthetic_image():
    image = demo.synthetic_image(64)  # white rectangle: rows 8..27, columns 8..23
    maps = demo.compute_maps(image, log=None)
    assert maps["sobel_x"].shape == (62, 62) and maps["left_diff"].shape == (64, 63)
    assert maps["pool_sobel_x"].shape == (31, 31) and maps["pool_input"].shape == (32, 32)
    assert all(m.dtype == np.float32 for m in maps.values())

    # valid cross-correlation: output column q is centred on input column q + 1
    sobel_x = maps["sobel_x"]
    rows = slice(10, 25)  # inside the rectangle's rows, away from its corners
    np.testing.assert_array_equal(sobel_x[rows, 6], 4)  # dark -> bright: centre column 7
    np.testing.assert_array_equal(sobel_x[rows, 7], 4)  # centre column 8
    np.testing.assert_array_equal(sobel_x[rows, 22], -4)  # the right edge, bright -> dark
    np.testing.assert_array_equal(sobel_x[rows, 9:21], 0)  # flat inside the rectangle
    np.testing.assert_array_equal(sobel_x[rows, 0:5], 0)  # flat background
    np.testing.assert_array_equal(maps["sobel_y"][rows, 9:21], 0)  # no horizontal edges there

    # seed 002's [-1, 1]: each pixel minus its left neighbour, one column wide
    left_diff = maps["left_diff"]
    np.testing.assert_array_equal(left_diff[rows, 7], 1)
    np.testing.assert_array_equal(left_diff[rows, 23], -1)
    assert np.count_nonzero(left_diff[rows, :30]) == 2 * 15  # nothing else in these columns
    np.testing.assert_allclose(maps["box_blur"][15, 12], 1.0, rtol=1e-6)  # mean of a flat window
    np.testing.assert_array_equal(maps["pool_input"], image.reshape(32, 2, 32, 2).max((1, 3)))


def test_main_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the demo's PNG needs matplotlib (gpuconv[demo])")
    out = tmp_path / "demo.png"
    assert demo.main(["-o", str(out), "--size", "64"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"{len(data)} bytes: too small for a 10-panel grid"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1000 and height > 500
    printed = capsys.readouterr().out
    assert "[1/3] conv2d" in printed and "wrote" in printed


def test_main_reads_an_image_file(tmp_path):
    pytest.importorskip("matplotlib", reason="the demo's PNG needs matplotlib (gpuconv[demo])")
    from matplotlib.image import imsave
    source = tmp_path / "in.png"
    imsave(source, demo.synthetic_image(32), cmap="gray")
    image = demo.load_image(source)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.9
    out = tmp_path / "out.png"
    assert demo.main([str(source), "-o", str(out), "--quiet", "--backend", "numpy"]) == 0
    assert out.stat().st_size > 10_000
