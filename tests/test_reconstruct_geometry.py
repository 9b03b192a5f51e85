"""``hsra reconstruct``: the capture's geometry (dispersion step, axis, mask size and offset) and the options that
name it are checked, and refused in one line, never used silently wrong."""

from __future__ import annotations

import numpy as np
import pytest

from hsra_cli.io import write_array
from hsra_cli.simulate import generate_mask, simulate_measurement
from hsra_cli.synth import procedural_scene
from test_cli_pipeline import one_line_error, run, smooth_cube

BANDS = 28


def _network_installed(name="hsra-s"):
    from hsra_cli.weights import find_model_folder

    return find_model_folder(name) is not None


def _capture_in_larger_mask(tmp_path, step, axis="width", top=30, left=40, size=(64, 64)):
    mask = generate_mask(128, 160, "random-grey", seed=5)
    scene = procedural_scene(*size, rng=np.random.default_rng(4))  # 28 bands
    window = mask[top : top + size[0], left : left + size[1]]
    measurement, _ = simulate_measurement(scene, window, step=step, axis=axis, noise="shot", seed=4)
    write_array(tmp_path / "cap.mat", measurement, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    return tmp_path / "cap.mat", tmp_path / "mask.mat"


# --- 1. --mask-offset auto with a named network -----------------------------------------------------------------


def test_mask_offset_auto_with_a_network_refuses_captures_of_another_step(tmp_path, capsys):
    """A network keeps the step it was trained for; captures that clearly show another step are refused in one
    line, not reconstructed with the wrong geometry."""
    if not _network_installed():
        pytest.skip("hsra-s weights are not installed")
    capture, mask = _capture_in_larger_mask(tmp_path, step=3)
    code, out, err = run(["reconstruct", capture, "--mask", mask, "--mask-offset", "auto", "--model", "s",
                          "-o", tmp_path / "out", "--threads", "1"], capsys)
    line = one_line_error(err)
    assert code == 1 and out == ""
    assert "the captures show step 3 along the width" in line
    assert "was trained for step 2" in line and "--model gap-tv" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_mask_offset_auto_with_a_network_still_finds_the_offset_at_its_own_step(tmp_path):
    from hsra_cli.calibrate import auto_geometry
    from hsra_cli.reconstruct import Reconstructor

    if not _network_installed():
        pytest.skip("hsra-s weights are not installed")
    capture, mask = _capture_in_larger_mask(tmp_path, step=2)
    start = Reconstructor("s", device="cpu")
    reconstructor, offset, record = auto_geometry(start, [capture], mask)
    assert reconstructor is start
    assert offset == (30, 40) and (record["step"], record["axis"]) == (2, "width") and record["confident"]


@pytest.mark.parametrize("model", ["gap-tv", "s"])
def test_mask_offset_auto_stops_when_the_calibration_is_not_conclusive(tmp_path, capsys, model):
    """A capture whose mask is not the one given (the pattern is not in it): the calibration is not conclusive,
    so the run stops in one line with the best guess, instead of reconstructing with it (as the README says)."""
    if model == "s" and not _network_installed():
        pytest.skip("hsra-s weights are not installed")
    capture, _ = _capture_in_larger_mask(tmp_path, step=2)
    write_array(tmp_path / "other.mat", generate_mask(128, 160, "random-binary", seed=99), key="mask")
    code, out, err = run(["reconstruct", capture, "--mask", tmp_path / "other.mat", "--mask-offset", "auto",
                          "--model", model, "-o", tmp_path / "out", "--threads", "1"], capsys)
    line = one_line_error(err)
    assert code == 1 and out == ""
    assert "calibration is not conclusive" in line and "nothing was reconstructed" in line
    assert "best guess: --mask-offset" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- 2. a mask too small for the capture --------------------------------------------------------------------------


@pytest.mark.parametrize("step, axis, transpose", [(3, "width", False), (2, "height", False), (2, "width", True)])
def test_a_mask_too_small_for_the_capture_hints_at_the_geometry_options(tmp_path, capsys, step, axis, transpose):
    cube = smooth_cube(64, 64, BANDS)
    mask = generate_mask(64, 64, "random-grey", seed=2)
    measurement, _ = simulate_measurement(cube, mask, step=step, axis=axis, noise="none")
    if transpose:
        measurement = measurement.T
    write_array(tmp_path / "cap.mat", measurement, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    code, out, err = run(["reconstruct", tmp_path / "cap.mat", "--mask", tmp_path / "mask.mat", "--model", "gap-tv",
                          "-o", tmp_path / "out", "--threads", "1"], capsys)
    line = one_line_error(err)
    assert code != 0 and out == ""
    assert "mask is 64×64" in line and "expected a mask at least that large" in line
    assert "check --bands, --step and --axis" in line


# --- 3. --name with conversions or format specs ---------------------------------------------------------------


@pytest.mark.parametrize("template", ["{stem!r}", "{stem:>40}", "x_{stem!s:>3}"])
def test_name_with_a_conversion_or_format_spec_is_a_clear_usage_error(tmp_path, capsys, template):
    capture, mask = _capture_in_larger_mask(tmp_path, step=2)
    code, out, err = run(["reconstruct", capture, "--mask", mask, "--name", template,
                          "-o", tmp_path / "out", "--threads", "1"], capsys)
    line = one_line_error(err)
    assert code == 2 and out == ""
    assert "conversions and format specs are not supported" in line and "use plain {stem}" in line
    assert "unknown placeholder" not in line


def test_name_check_still_names_unknown_placeholders():
    from hsra_cli.batch import check_name_template
    from hsra_cli.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown placeholder \{method\}"):
        check_name_template("{stem}_{method}", {"stem": "x"})
    check_name_template("{stem}_out", {"stem": "x"})


# --- 4. --mask-offset spelling ------------------------------------------------------------------------------------


def test_mask_offset_auto_is_case_insensitive(tmp_path, capsys):
    capture, mask = _capture_in_larger_mask(tmp_path, step=2)
    code, out, err = run(["reconstruct", capture, "--mask", mask, "--mask-offset", "AUTO", "--model", "gap-tv",
                          "-o", tmp_path / "out", "--threads", "1"], capsys)
    assert code == 0, err
    assert "--mask-offset 30,40 --step 2 --axis width" in err


@pytest.mark.parametrize("value", ["autox", "1;2", "1,2,3", "a,b"])
def test_a_malformed_mask_offset_says_what_is_expected(tmp_path, capsys, value):
    capture, mask = _capture_in_larger_mask(tmp_path, step=2)
    code, out, err = run(["reconstruct", capture, "--mask", mask, "--mask-offset", value, "--model", "gap-tv",
                          "-o", tmp_path / "out", "--threads", "1"], capsys)
    line = one_line_error(err)
    assert code == 2 and out == ""
    assert repr(value) in line and "expected ROW,COL or auto" in line
