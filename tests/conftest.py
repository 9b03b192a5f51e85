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


@pytest.fixture()
def sample_with_shipped_default(monkeypatch):
    """The bundled sample (measurement, mask, truth) with the shipped weights on the search path; skips when the
    checkout has no shipped hsra-s.any."""
    from hsra_cli.io import read_cube, read_mask, read_measurement

    root = Path(__file__).resolve().parents[1]
    if not (root / "hsra_cli" / "models" / "hsra-s.any" / "model.safetensors").is_file():
        pytest.skip("the shipped hsra-s.any weights are not in this checkout")
    monkeypatch.setenv("HSRA_MODELS_DIR", str(root / "hsra_cli" / "models"))
    sample = root / "samples" / "colorchecker"
    y, _ = read_measurement(sample / "meas" / "colorchecker.mat")
    mask, _ = read_mask(sample / "meas" / "mask.mat")
    truth, _ = read_cube(sample / "cube" / "colorchecker.mat")
    return y, mask, truth


@pytest.fixture()
def installed_hsra_s(tmp_path, monkeypatch):
    """A randomly initialised hsra-s installed as a model folder under HSRA_MODELS_DIR."""
    from hsra_cli.registry import create_model
    from hsra_cli.weights import save_model_folder

    torch.manual_seed(0)
    model = create_model("hsra-s")
    save_model_folder(model, tmp_path / "models" / "hsra-s", card={"training": {"data": "none (test)"}})
    monkeypatch.setenv("HSRA_MODELS_DIR", str(tmp_path / "models"))
    return model
