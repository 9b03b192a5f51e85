"""Shared test fixtures: the real data beside the repository (skipped when absent) and quiet, small torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests share a 2-core machine: keep torch from oversubscribing it.
torch.set_num_threads(int(os.environ.get("HSRA_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kaist(shared_data):
    """(truth float32 (5, 256, 256, 28) in [0, 1], mask float32 (256, 256), wavelengths)."""
    import numpy as np
    import scipy.io

    truth_file = shared_data / "kaist" / "kaist_scenes01-05_truth_uint8.npz"
    mask_file = shared_data / "kaist" / "mask_256.mat"
    if not truth_file.exists() or not mask_file.exists():
        pytest.skip("KAIST data is not present")
    with np.load(truth_file) as data:
        truth = data["truth"].astype(np.float32) / 255
        wavelengths = data["wavelengths_nm"]
    mask = scipy.io.loadmat(mask_file)["mask"].astype(np.float32)
    return truth, mask, wavelengths
