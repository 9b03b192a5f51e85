"""The CASSI operator: the one home of the forward model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hsra_cli import CassiOperator
from hsra_cli.errors import ShapeError, ValueRangeError
from hsra_cli.physics import as_operator, shifted_mask_bands

SETTINGS = [
    # bands, step, height, width
    (28, 2, 16, 20),
    (28, 1, 9, 13),
    (31, 2, 7, 11),
    (24, 3, 10, 8),
    (3, 1, 5, 5),
    (1, 2, 4, 6),
]


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


@pytest.mark.parametrize("axis", ["width", "height"])
@pytest.mark.parametrize("bands,step,height,width", SETTINGS)
@pytest.mark.parametrize("form", ["aperture", "shifted", "batched"])
def test_adjoint_is_exact_for_every_setting(bands, step, height, width, axis, form):
    torch.manual_seed(bands * 100 + step)
    aperture = torch.rand(height, width, dtype=torch.float64)
    op = CassiOperator(aperture, bands=bands, step=step, axis=axis)
    if form == "shifted":
        op = CassiOperator(op.phi()[0], bands=bands, step=step, axis=axis)
    elif form == "batched":
        op = CassiOperator(torch.rand(2, 1, height, width, dtype=torch.float64), bands=bands, step=step, axis=axis)
    x = torch.randn(2, bands, height, width, dtype=torch.float64)
    y = op.A(x)
    assert tuple(y.shape[-2:]) == op.measurement_shape
    r = torch.randn_like(y)
    lhs, rhs = _inner(y, r), _inner(x, op.A_adjoint(r))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("axis", ["width", "height"])
def test_measurement_size_follows_bands_step_and_axis(axis):
    op = CassiOperator(torch.ones(256, 256), bands=28, step=2, axis=axis)
    assert op.measurement_shape == ((256, 310) if axis == "width" else (310, 256))
    op = CassiOperator(torch.ones(10, 12), bands=31, step=1, axis=axis)
    assert op.measurement_shape == ((10, 42) if axis == "width" else (40, 12))


def test_band_b_lands_step_b_pixels_along_the_width():
    op = CassiOperator(torch.ones(4, 5), bands=3, step=2)
    x = torch.zeros(1, 3, 4, 5)
    x[0, 2, 1, 0] = 1.0  # band 2, row 1, column 0 -> measurement column 4
    y = op.A(x)
    assert y[0, 1, 4] == 1 and y.sum() == 1


def test_A_A_adjoint_is_diagonal_phi_s():
    op = CassiOperator(torch.rand(12, 9, dtype=torch.float64), bands=5, step=2)
    r = torch.randn(1, *op.measurement_shape, dtype=torch.float64)
    assert torch.allclose(op.A_A_adjoint(r), op.A(op.A_adjoint(r)))


def test_phi_s_replaces_zeros_by_one():
    mask = torch.zeros(4, 4)
    mask[1, 1] = 1
    phi_s = CassiOperator(mask, bands=2, step=1).phi_s()
    assert phi_s.min() == 1 and (phi_s == 1).all()


def test_shifted_mask_in_hwc_and_chw_layouts_give_the_same_operator():
    aperture = torch.rand(8, 10)
    op = CassiOperator(aperture, bands=6, step=2)
    phi_chw = op.phi()[0]
    from_hwc = CassiOperator(phi_chw.permute(1, 2, 0).numpy(), bands=6, step=2)
    from_chw = CassiOperator(phi_chw, bands=6, step=2)
    x = torch.rand(1, 6, 8, 10)
    assert from_hwc.mask_form == from_chw.mask_form == "shifted"
    assert op.mask_form == "aperture"
    assert torch.allclose(from_hwc.A(x), op.A(x)) and torch.allclose(from_chw.A(x), op.A(x))


def test_shifted_mask_with_the_wrong_step_is_refused():
    phi = CassiOperator(torch.rand(8, 10) + 0.1, bands=6, step=2).phi()[0]
    with pytest.raises(ShapeError, match="step"):
        CassiOperator(phi, bands=6, step=3)


def test_bad_masks_are_clear_errors():
    with pytest.raises(ValueRangeError, match="NaN"):
        CassiOperator(torch.tensor([[1.0, float("nan")]]), bands=2, step=1)
    with pytest.raises(ValueRangeError, match="all zero"):
        CassiOperator(torch.zeros(3, 3), bands=2, step=1)
    with pytest.raises(ShapeError, match="dimensions"):
        CassiOperator(torch.ones(3), bands=2, step=1)
    with pytest.raises(ShapeError, match="step"):
        CassiOperator(torch.ones(3, 3), bands=2, step=0)
    with pytest.raises(ShapeError, match="axis"):
        CassiOperator(torch.ones(3, 3), bands=2, step=1, axis="depth")


def test_measurement_that_disagrees_with_bands_and_step_names_the_expected_size():
    op = CassiOperator(torch.ones(256, 256))
    with pytest.raises(ShapeError, match="256×310"):
        op.A_adjoint(torch.zeros(1, 256, 300))


def test_as_operator_reads_a_batch_of_apertures_against_the_measurement():
    op = CassiOperator(torch.rand(2, 1, 6, 7), bands=4, step=1)
    y = op.A(torch.rand(2, 4, 6, 7))
    same = as_operator(op.band_mask[:, 0], y, bands=4, step=1)
    assert same.batch == 2 and same.mask_form == "aperture"
    assert torch.allclose(same.A_adjoint(y), op.A_adjoint(y))


def test_tile_operator_matches_the_measurement_window_of_an_isolated_tile():
    for axis in ("width", "height"):
        op = CassiOperator(torch.rand(20, 24), bands=5, step=2, axis=axis)
        x = torch.zeros(1, 5, 20, 24)
        x[..., 3:10, 4:12] = torch.rand(1, 5, 7, 8)
        window = op.measurement_window(op.A(x), 3, 4, 7, 8)
        assert torch.allclose(op.crop(3, 4, 7, 8).A(x[..., 3:10, 4:12]), window)


@pytest.mark.parametrize("axis", ["width", "height"])
@pytest.mark.parametrize("form", ["aperture", "shifted", "batched"])
def test_mirrored_operator_is_an_exact_symmetry(axis, form):
    torch.manual_seed(7)
    op = CassiOperator(torch.rand(9, 13, dtype=torch.float64), bands=5, step=2, axis=axis)
    if form == "shifted":
        op = CassiOperator(op.phi()[0], bands=5, step=2, axis=axis)
    elif form == "batched":
        op = CassiOperator(torch.rand(2, 1, 9, 13, dtype=torch.float64), bands=5, step=2, axis=axis)
    mirrored = op.mirrored()
    assert mirrored.mask_form == op.mask_form and mirrored.cube_shape == op.cube_shape
    x = torch.rand(2, 5, 9, 13, dtype=torch.float64)
    y = op.A(x)
    assert torch.equal(mirrored.A(op.mirror(x)), op.mirror(y))
    assert torch.equal(mirrored.A_adjoint(op.mirror(y)), op.mirror(op.A_adjoint(y)))
    # lines across the dispersion are what get reversed; along it the shear would not commute
    assert not torch.equal(op.mirror(x), x.flip(-2 if axis == "height" else -1))
    assert torch.equal(mirrored.mirrored().band_mask, op.band_mask)


def test_kaist_measurement_equals_the_documented_formula(kaist):
    """y[i, j] = Σ_b mask[i, j − 2b] · x_b[i, j − 2b], written out with NumPy, for the real data."""
    truth, mask, _ = kaist
    cube = truth[0]  # H × W × C
    bands = cube.shape[-1]
    expected = np.zeros((256, 256 + 2 * (bands - 1)), dtype=np.float64)
    for b in range(bands):
        expected[:, 2 * b : 2 * b + 256] += mask * cube[:, :, b]
    op = CassiOperator(mask)
    y = op.A(torch.from_numpy(cube).permute(2, 0, 1)).numpy()
    assert y.shape == (256, 310)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_a_shifted_mask_for_another_band_count_names_it():
    for axis in ("width", "height"):
        phi = CassiOperator(torch.rand(16, 16) + 0.1, bands=31, axis=axis).phi()[0]  # 31 × 16 × 76 (width)
        for layout in (phi, phi.permute(1, 2, 0)):  # C×H×W' and H×W'×C
            with pytest.raises(ShapeError, match="looks like a mask for 31 bands: pass --bands 31"):
                CassiOperator(layout, bands=28, axis=axis)
            assert CassiOperator(layout, bands=31, axis=axis).mask_form == "shifted"
            assert shifted_mask_bands(layout.numpy(), axis=axis) == 31
    assert shifted_mask_bands(np.ones((16, 16))) is None and shifted_mask_bands(np.ones((16, 40, 9))) is None
    with pytest.raises(ShapeError, match=r"W' > 54$"):  # no band count to suggest: no guess
        CassiOperator(torch.rand(16, 40, 9), bands=28)


def test_A_A_adjoint_refuses_a_wrong_shape_as_A_and_A_adjoint_do():
    op = CassiOperator(torch.rand(16, 20), bands=4, step=2)
    for method in (op.A, op.A_adjoint, op.A_A_adjoint):
        with pytest.raises(ShapeError):
            method(torch.zeros(3, 3))


def test_A_A_adjoint_keeps_an_unbatched_measurement_unbatched():
    op = CassiOperator(torch.rand(16, 20), bands=4, step=2)
    r = torch.rand(16, 26)
    out = op.A_A_adjoint(r)
    assert out.shape == r.shape
    torch.testing.assert_close(out, op.A(op.A_adjoint(r)))
    assert op.A_A_adjoint(r.numpy()).shape == r.shape


def test_a_batch_of_masks_needs_a_matching_batch():
    masks = torch.rand(3, 1, 16, 20)
    op = CassiOperator(masks, bands=4, step=2)
    cube, r = torch.rand(3, 4, 16, 20), torch.rand(3, 16, 26)
    # mask i meets sample i
    for i in range(3):
        single = CassiOperator(masks[i, 0], bands=4, step=2)
        torch.testing.assert_close(op.A(cube)[i], single.A(cube[i]))
        torch.testing.assert_close(op.A_adjoint(r)[i], single.A_adjoint(r[i]))
        torch.testing.assert_close(op.A_A_adjoint(r)[i], single.A_A_adjoint(r[i]))
    # a batch of 1 goes through every mask
    assert op.A(cube[:1]).shape == (3, 16, 26) and op.A_adjoint(r[:1]).shape == (3, 4, 16, 20)
    # another batch size, or no batch dimension, is refused clearly
    for method, value in [(op.A, cube[:2]), (op.A, cube[0]), (op.A_adjoint, r[:2]), (op.A_adjoint, r[0]),
                          (op.A_A_adjoint, r[:2]), (op.A_A_adjoint, r[0])]:
        with pytest.raises(ShapeError, match="3 masks"):
            method(value)
    # one mask serves any batch, batched or not
    one = CassiOperator(masks[:1], bands=4, step=2)
    assert one.A(cube[:2]).shape == (2, 16, 26) and one.A(cube[0]).shape == (16, 26)
    assert one.A_adjoint(r[:2]).shape == (2, 4, 16, 20) and one.A_A_adjoint(r[:2]).shape == (2, 16, 26)


@pytest.mark.parametrize("batched", [False, True])
def test_adjoint_out_of_the_wrong_shape_is_a_shape_error(batched):
    op = CassiOperator(torch.rand(16, 20), bands=4, step=2)
    r = torch.rand(2, 16, 26) if batched else torch.rand(16, 26)
    good = torch.empty(*r.shape[:-2], 4, 16, 20)
    assert op.A_adjoint(r, out=good) is not None
    torch.testing.assert_close(good, op.A_adjoint(r))
    for wrong in (torch.zeros(5, 5), torch.zeros(1, *good.shape), torch.zeros(*good.shape[:-1], 21)):
        before = wrong.shape
        with pytest.raises(ShapeError, match="out of shape"):
            op.A_adjoint(r, out=wrong)
        assert wrong.shape == before  # not resized
    array = np.zeros((5, 5), np.float32)
    with pytest.raises(ShapeError, match="out of shape"):
        op.A_adjoint(r.numpy(), out=array)
    array = np.zeros(good.shape, np.float32)
    op.A_adjoint(r.numpy(), out=array)
    np.testing.assert_allclose(array, good.numpy(), rtol=1e-6)
