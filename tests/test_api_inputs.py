"""The Python API takes what a user hands it as ``hsra reconstruct`` takes files: numpy arrays of any numeric dtype
and byte order, torch tensors, the CLI's value rules (mask in [0, 1], integers scaled, NaN refused), and the
project's own errors with one clear message instead of numpy/torch errors from deep inside."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsra_cli import CassiOperator, Reconstructor
from hsra_cli.errors import ShapeError, ValueRangeError
from hsra_cli.io import MASK_TOLERANCE
from hsra_cli.registry import create_model

BANDS, STEP, H, W = 28, 2, 32, 40


@pytest.fixture(scope="module")
def capture():
    """A field-scale measurement (float32, H×W') of a random [0, 1] cube through a binary aperture (float32 0/1)."""
    rng = np.random.default_rng(3)
    mask = (rng.random((H, W)) > 0.5).astype(np.float32)
    cube = rng.random((BANDS, H, W)).astype(np.float32)
    y = CassiOperator(torch.from_numpy(mask)).A(torch.from_numpy(cube)).numpy()
    return y, mask


@pytest.fixture(scope="module")
def gap_tv():
    return Reconstructor("gap-tv", model_kwargs={"iterations": 4})


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return create_model("hsra-dum-2stg").eval()


def run(model, y, mask):
    with torch.no_grad():
        return model(y, mask)


# ------------------------------------------------------------------------------------------------------
# 1. the Reconstructor applies the mask rules of read_mask


@pytest.mark.parametrize("change,words", [(lambda m: m - 0.5, "negative"), (lambda m: m * 3, "up to 3")])
def test_reconstructor_refuses_masks_the_cli_refuses(capture, gap_tv, change, words):
    y, mask = capture
    with pytest.raises(ValueRangeError, match=words):
        gap_tv.reconstruct(y, change(mask))


def test_reconstructor_scales_an_integer_mask_and_keeps_float_masks_within_the_tolerance(capture, gap_tv):
    y, mask = capture
    reference = gap_tv.reconstruct(y, mask).cube
    as_uint8 = gap_tv.reconstruct(y, (mask * 255).astype(np.uint8))
    np.testing.assert_array_equal(as_uint8.cube, reference)
    assert any("1/255" in note for note in as_uint8.record["warnings"])
    np.testing.assert_array_equal(gap_tv.reconstruct(y, mask.astype(np.uint8)).cube, reference)  # 0/1 as it is
    gap_tv.reconstruct(y, mask * np.float32(MASK_TOLERANCE - 0.005))  # calibration noise above 1 is fine


# ------------------------------------------------------------------------------------------------------
# 2. model(y, mask) with numpy arrays


def test_network_takes_float64_as_float32(capture, network):
    y, mask = capture
    expected = run(network, y, mask)
    got = run(network, y.astype(np.float64), mask.astype(np.float64))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_integer_measurements_are_scaled_alike_by_the_network_and_the_reconstructor(capture, network, gap_tv):
    y, mask = capture
    counts = np.round(y / y.max() * 60000).astype(np.uint16)
    scaled = counts.astype(np.float32) / np.float32(65535)
    torch.testing.assert_close(run(network, counts, mask), run(network, scaled, mask))
    np.testing.assert_array_equal(gap_tv.reconstruct(counts, mask).cube, gap_tv.reconstruct(scaled, mask).cube)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_measurements_are_refused_by_the_network_as_by_the_reconstructor(capture, network, gap_tv, bad):
    y, mask = capture
    broken = y.copy()
    broken[3, 3] = bad
    with pytest.raises(ValueRangeError, match="NaN"):
        gap_tv.reconstruct(broken, mask)
    with pytest.raises(ValueRangeError, match="NaN"):
        run(network, broken, mask)
    with pytest.raises(ValueRangeError, match="NaN"):
        run(network, torch.from_numpy(broken), mask)


def test_network_refuses_masks_the_cli_refuses(capture, network):
    y, mask = capture
    with pytest.raises(ValueRangeError, match="up to 3"):
        run(network, y, mask * 3)
    with pytest.raises(ValueRangeError, match="negative"):
        run(network, y, torch.from_numpy(mask - 0.5))
    torch.testing.assert_close(run(network, y, (mask * 255).astype(np.uint8)), run(network, y, mask))


# ------------------------------------------------------------------------------------------------------
# 3. byte order, tensors, empty arrays, the operator with numpy


def test_big_endian_arrays_just_work(capture, network, gap_tv):
    y, mask = capture
    torch.testing.assert_close(run(network, y.astype(">f4"), mask.astype(">f8")), run(network, y, mask))
    np.testing.assert_array_equal(gap_tv.reconstruct(y.astype(">f4"), mask.astype(">f4")).cube,
                                  gap_tv.reconstruct(y, mask).cube)


def test_reconstructor_takes_tensors(capture, gap_tv):
    y, mask = capture
    got = gap_tv.reconstruct(torch.from_numpy(y), torch.from_numpy(mask).requires_grad_())
    np.testing.assert_array_equal(got.cube, gap_tv.reconstruct(y, mask).cube)


def test_empty_arrays_are_shape_errors_naming_the_shape(capture, network, gap_tv):
    y, mask = capture
    empty = np.zeros((0, 0), np.float32)
    with pytest.raises(ShapeError, match="measurement is empty.*0×0"):
        gap_tv.reconstruct(empty, mask)
    with pytest.raises(ShapeError, match="mask is empty.*0×0"):
        gap_tv.reconstruct(y, empty)
    with pytest.raises(ShapeError, match="measurement is empty"):
        run(network, empty, mask)


def test_non_numeric_input_is_a_value_error_not_a_numpy_one(capture, gap_tv):
    y, mask = capture
    with pytest.raises(ValueRangeError, match="complex"):
        gap_tv.reconstruct(y.astype(np.complex64), mask)
    with pytest.raises(ValueRangeError, match="mask holds"):
        gap_tv.reconstruct(y, np.full(mask.shape, "x"))


def test_operator_answers_numpy_with_numpy_and_tensors_with_tensors(capture):
    y, mask = capture
    op = CassiOperator(mask.astype(">f4"))
    cube = np.random.default_rng(0).random((BANDS, H, W)).astype(np.float32)
    forward = op.A(cube)
    assert isinstance(forward, np.ndarray) and forward.dtype == np.float32
    np.testing.assert_array_equal(forward, op.A(torch.from_numpy(cube)).numpy())
    back = op.A_adjoint(y.astype(">f4"))
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, op.A_adjoint(torch.from_numpy(y)).numpy())
    assert isinstance(op.shift_back(y), np.ndarray) and isinstance(op.A_A_adjoint(y), np.ndarray)
    assert isinstance(op.A(torch.from_numpy(cube)), torch.Tensor)
    with pytest.raises(ShapeError, match="does not fit the mask"):
        op.A(cube[:, :-1])


def test_the_gap_tv_model_takes_numpy_arrays_and_one_measurement_as_the_networks_do(capture, gap_tv):
    y, mask = capture
    solver = create_model("gap-tv", iterations=4)
    cube = run(solver, y, mask)  # numpy in, one H×W' measurement: one C×H×W cube back
    assert isinstance(cube, torch.Tensor) and tuple(cube.shape) == (BANDS, H, W)
    np.testing.assert_allclose(cube.numpy(), run(solver, torch.from_numpy(y)[None], torch.from_numpy(mask))[0].numpy())
    with pytest.raises(ValueRangeError, match="up to 3"):
        run(solver, y, mask * 3)


def test_a_dangling_link_in_a_folder_is_an_input_that_fails_by_name(tmp_path, capsys):
    """A folder's link to a share not mounted here is listed and fails alone, named with its target, rather than
    vanishing from the batch (which would shift --num-parts shares between machines)."""
    from hsra_cli.cli import main
    from hsra_cli.inputs import collect

    folder = tmp_path / "lnk"
    folder.mkdir()
    np.save(folder / "a.npy", np.random.default_rng(3).random((16, 16, 28)).astype(np.float32))
    (folder / "b.npy").symlink_to(tmp_path / "nas" / "x.npy")
    sources, problems, _ = collect([folder])
    assert [source.path.name for source in sources] == ["a.npy", "b.npy"] and not problems
    sources, _, _ = collect([str(folder / "*.npy")])
    assert [source.path.name for source in sources] == ["a.npy", "b.npy"]
    code = main(["evaluate", str(folder), "--truth", str(folder / "a.npy"), "--pair-by-position", "--csv"])
    err = capsys.readouterr().err
    assert code == 1 and f"b.npy is a link to {tmp_path / 'nas' / 'x.npy'}, which does not exist" in err
