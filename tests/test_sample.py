"""The bundled sample is what samples/make_sample.py generates (no stale or foreign data in samples/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from hsra_cli.io import read_cube, read_mask, read_measurement

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "colorchecker"


def test_committed_sample_matches_its_generator(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "samples" / "make_sample.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    np.testing.assert_array_equal(read_cube(tmp_path / "cube" / "colorchecker.mat")[0],
                                  read_cube(SAMPLE / "cube" / "colorchecker.mat")[0])
    np.testing.assert_allclose(read_measurement(tmp_path / "meas" / "colorchecker.mat")[0],
                               read_measurement(SAMPLE / "meas" / "colorchecker.mat")[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(read_mask(tmp_path / "meas" / "mask.mat")[0], read_mask(SAMPLE / "meas" / "mask.mat")[0])


def test_sample_patches_are_distinct_colours():
    cube = read_cube(SAMPLE / "cube" / "colorchecker.mat")[0]
    from hsra_cli.synth import colorchecker_patch_boxes

    spectra = np.stack([cube[t:b, l:r].mean(axis=(0, 1)) for t, l, b, r in colorchecker_patch_boxes(*cube.shape[:2])])
    distances = np.linalg.norm(spectra[:, None] - spectra[None], axis=-1)[np.triu_indices(24, 1)]
    assert distances.min() > 0.05
