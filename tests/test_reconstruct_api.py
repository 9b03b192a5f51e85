"""The Python library's Reconstructor takes its arguments as documented, and refuses others clearly."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

import hsra_cli
from hsra_cli.errors import ShapeError, UsageError
from hsra_cli.physics import CassiOperator
from hsra_cli.reconstruct import Reconstructor, crop_mask, parse_mask_offset
from hsra_cli.simulate import generate_mask, simulate_measurement


@pytest.fixture(scope="module")
def capture_in_big_mask():
    """A 24×24 capture (8 bands) whose aperture lies at row 5, column 9 of a 40×60 mask."""
    rng = np.random.default_rng(0)
    mask = generate_mask(24, 24, "random-binary", seed=1)
    y, _ = simulate_measurement(rng.random((24, 24, 8), dtype=np.float32), mask)
    big = np.zeros((40, 60), np.float32)
    big[5:29, 9:33] = mask
    return y, mask, big


@pytest.fixture(scope="module")
def phi31():
    """A 3-D shifted mask for 31 bands (H×W'×31 = 24×84×31) and its measurement."""
    op = CassiOperator(torch.from_numpy(np.random.default_rng(2).random((24, 24), dtype=np.float32)), bands=31)
    cube = torch.from_numpy(np.random.default_rng(3).random((31, 24, 24), dtype=np.float32))
    return op.A(cube).numpy(), op.phi()[0].permute(1, 2, 0).numpy()


# --- 1. mask_offset ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [(5, 9), [5, 9], "5,9", " 5, 9 ", (5.0, 9.0), np.array([5, 9]),
                                    (np.int64(5), np.int32(9)), torch.tensor([5, 9])])
def test_mask_offset_takes_a_pair_of_integers_or_the_cli_string(capture_in_big_mask, offset):
    y, _, big = capture_in_big_mask
    result = Reconstructor("gap-tv", bands=8).reconstruct(y, big, mask_offset=offset)
    assert result.record["mask"]["offset"] == [5, 9]
    assert all(type(v) is int for v in result.record["mask"]["offset"])
    json.dumps(result.record)  # numpy integers never reach the record
    assert parse_mask_offset(offset) == (5, 9)


@pytest.mark.parametrize("offset", ["1,2,3", "a,b", "5", (1.5, 2), (1,), (1, 2, 3), 5, {"row": 1}, (True, 2),
                                    np.zeros((2, 2), int), (float("nan"), 2)])
def test_other_mask_offsets_are_refused_saying_what_is_expected(capture_in_big_mask, offset):
    y, _, big = capture_in_big_mask
    with pytest.raises(UsageError, match=r"mask_offset .*expected a \(row, column\) pair of integer"):
        Reconstructor("gap-tv", bands=8).reconstruct(y, big, mask_offset=offset)


@pytest.mark.parametrize("offset", ["auto", "AUTO"])
def test_mask_offset_auto_names_the_calibration(capture_in_big_mask, offset):
    y, _, big = capture_in_big_mask
    with pytest.raises(UsageError, match=r"hsra_cli\.calibrate\.calibrate\(.*--mask-offset auto"):
        Reconstructor("gap-tv", bands=8).reconstruct(y, big, mask_offset=offset)
    with pytest.raises(UsageError, match="calibrate"):
        Reconstructor("gap-tv", bands=8).operator_for(y, big, mask_offset=offset)
    # the API the message names is the one there is
    from hsra_cli.calibrate import Calibration, calibrate

    assert {"captures", "mask", "bands"} <= set(inspect.signature(calibrate).parameters)
    assert {"offset", "step", "axis"} <= set(Calibration.__dataclass_fields__)


def test_an_offset_of_zero_on_a_mask_of_the_capture_size_crops_nothing(capture_in_big_mask):
    y, mask, _ = capture_in_big_mask
    record = Reconstructor("gap-tv", bands=8).reconstruct(y, mask, mask_offset=(0, 0)).record
    assert record["mask"]["cropped"] is False
    assert crop_mask(mask, 24, 24, (0, 0))[1] == {"cropped": False, "offset": [0, 0]}
    assert crop_mask(mask, 24, 24, None)[1] == {"cropped": False}
    with pytest.raises(UsageError, match="outside"):
        crop_mask(mask, 24, 24, (1, 0))


# --- 2. the band count of a 3-D shifted mask --------------------------------------------------------------------
@pytest.mark.parametrize("model", ["auto", "gap-tv"])
def test_a_3d_shifted_mask_gives_its_band_count_as_in_the_cli(phi31, model):
    y, phi = phi31
    reconstructor = Reconstructor(model)
    result = reconstructor.reconstruct(y, phi)
    assert result.cube.shape == (24, 24, 31)
    assert result.record["model"] == "gap-tv" and result.record["physics"]["bands"] == 31
    assert any("31 bands, as the 3-D mask's layout shows" in w for w in result.record["warnings"])
    if model == "auto" and reconstructor.entry.needs_weights:  # auto had chosen the shipped network
        assert "bands=31" in result.record["model_choice"]["reason"]
    op, _ = reconstructor.operator_for(y, phi)
    assert op.bands == 31
    # the reconstructor itself is unchanged: a 2-D mask still gets its own band count
    assert reconstructor.bands == 28 and reconstructor.entry.name in ("gap-tv", "hsra-dum-2stg")
    # bands, when given, decides
    with pytest.raises(ShapeError, match="31 bands"):
        Reconstructor(model, bands=28).reconstruct(y, phi)


def test_a_network_refuses_a_3d_mask_of_another_band_count_naming_python_arguments(installed_hsra_s, phi31):
    y, phi = phi31
    with pytest.raises(UsageError, match=r"bands=31.*hsra-s reconstructs 28 bands.*model='gap-tv'") as caught:
        Reconstructor("s").reconstruct(y, phi)
    assert "--" not in str(caught.value)


# --- 3. constructor arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,said", [
    ({"tile_size": "abc"}, "tile_size=) must be 'auto'"),
    ({"tile_size": -3}, "tile_size=) must be 'auto'"),
    ({"tile_size": 2.5}, "tile_size=) must be 'auto'"),
    ({"tile_size": True}, "tile_size=) must be 'auto'"),
    ({"memory_cap_gb": -1}, "memory_cap_gb=) must be a finite number of GB > 0"),
    ({"memory_cap_gb": 0}, "memory_cap_gb=) must be a finite number of GB > 0"),
    ({"memory_cap_gb": float("inf")}, "memory_cap_gb=) must be a finite number of GB > 0"),
    ({"memory_cap_gb": "4"}, "memory_cap_gb=) must be a finite number of GB > 0"),
    ({"tile_overlap": "x"}, "tile_overlap=) must be a fraction in"),
    ({"tile_overlap": 1.0}, "tile_overlap=) must be a fraction in"),
])
def test_bad_constructor_arguments_are_refused_at_construction(kwargs, said):
    import re

    with pytest.raises(UsageError, match=re.escape(said)):
        Reconstructor("gap-tv", **kwargs)


def test_good_constructor_arguments_are_taken():
    assert Reconstructor("gap-tv", tile_size="256").tile_size == 256
    assert Reconstructor("gap-tv", tile_size=np.int64(128)).tile_size == 128
    assert Reconstructor("gap-tv", tile_size="AUTO").tile_size == "auto"
    assert Reconstructor("gap-tv", tile_size=None).tile_size is None
    assert Reconstructor("gap-tv", memory_cap_gb=1).memory_cap_gb == 1.0


# --- 4. one stated minimum tile size ----------------------------------------------------------------------------
def test_the_minimum_tile_size_is_stated_consistently():
    r = Reconstructor("gap-tv")  # 28 bands at step 2: a 54-pixel spread
    least = r.min_tile_size()
    assert least == 2 * 54 + 8
    for tile in (8, 100, least - 1):
        with pytest.raises(UsageError, match=rf"{tile} is too small for the dispersion spread of 54 px.* at least {least}$"):
            Reconstructor("gap-tv", tile_size=tile)
    assert Reconstructor("gap-tv", tile_size=least).tile_size == least
    assert Reconstructor("gap-tv", bands=8, tile_size=36).tile_size == 36  # 8 bands: a 14-pixel spread
    # the stated minimum works: a capture wider than the tile is reconstructed in tiles of that size
    mask = generate_mask(24, 200, "random-binary", seed=2)
    y, _ = simulate_measurement(np.full((24, 200, 28), 0.5, np.float32), mask)
    result = Reconstructor("gap-tv", tile_size=least).reconstruct(y, mask)
    assert result.record["tiling"]["tile_size"] == least


def test_the_package_exports_the_reconstructor():
    assert hsra_cli.Reconstructor is Reconstructor
