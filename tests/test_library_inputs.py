"""The Python library's readers and Reconstructor give what the CLI gives for the same files, and refuse bad
arguments with the project's own errors (QA sweep of the Python API: integer captures, wide integer masks,
argument checks at construction)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from hsra_cli import CassiOperator, Reconstructor
from hsra_cli import io
from hsra_cli.cli import main
from hsra_cli.errors import ShapeError, UsageError, ValueRangeError
from hsra_cli.registry import create_model

BANDS, H, W = 8, 24, 24


@pytest.fixture(scope="module")
def binary_mask():
    return np.random.default_rng(0).random((H, W)) > 0.5


@pytest.fixture(scope="module")
def field_capture(binary_mask):
    """A field-scale measurement (float32, H×W') of a random cube through ``binary_mask``."""
    cube = np.random.default_rng(1).random((BANDS, H, W)).astype(np.float32) * 0.5
    return CassiOperator(binary_mask.astype(np.float32), bands=BANDS).A(cube)


# --- integer captures: read_measurement -> Reconstructor gives the CLI's cube ------------------------------------
def test_read_measurement_keeps_an_integer_files_type_and_values(tmp_path):
    frame = np.random.default_rng(2).integers(0, 40000, (6, 20)).astype(">u2")  # big-endian, as some cameras write
    np.save(tmp_path / "cap.npy", frame)
    meas, loaded = io.read_measurement(tmp_path / "cap.npy")
    assert meas.dtype == np.uint16 and meas.dtype.isnative and meas.flags.c_contiguous
    np.testing.assert_array_equal(meas, frame)
    assert loaded.metadata["integer_dtype"] == "uint16"
    scaled, note = io.unit_range(meas, loaded)  # the CLI's scaling of the same array: float32 in [0, 1]
    assert scaled.dtype == np.float32 and note.endswith("uint16 data scaled by 1/65535")
    np.testing.assert_array_equal(scaled, frame.astype(np.float32) / np.float32(65535))
    # float files still read as float32, values as stored
    np.save(tmp_path / "f.npy", frame.astype(np.float64))
    assert io.read_measurement(tmp_path / "f.npy")[0].dtype == np.float32


@pytest.mark.parametrize("dtype, key", [(np.uint16, "meas"), (np.uint8, "meas"), (np.uint16, "meas_real")])
def test_library_flow_on_an_integer_capture_gives_the_clis_cube(tmp_path, capsys, binary_mask, field_capture,
                                                                 dtype, key):
    full = np.iinfo(dtype).max
    frame = (field_capture / field_capture.max() * (0.6 * full)).astype(dtype)  # a camera frame in counts
    scipy.io.savemat(tmp_path / "cap.mat", {key: frame})
    scipy.io.savemat(tmp_path / "mask.mat", {"mask": binary_mask.astype(np.float32)})

    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--model", "gap-tv",
                 "--bands", str(BANDS), "-o", str(tmp_path / "out"), "--no-previews", "-q", "--format", "npy"])
    capsys.readouterr()
    assert code == 0
    cli_cube = np.load(next((tmp_path / "out").rglob("cap*.npy")))

    meas, _ = io.read_measurement(tmp_path / "cap.mat")  # the README's library flow
    mask, _ = io.read_mask(tmp_path / "mask.mat")
    result = Reconstructor("gap-tv", bands=BANDS).reconstruct(meas, mask)
    assert result.record["normalization"]["mode"] == "max"
    assert any(f"{np.dtype(dtype).name} data scaled by 1/{full}" in note for note in result.record["warnings"])
    np.testing.assert_allclose(result.cube, cli_cube, rtol=1e-5, atol=1e-5)
    assert float(result.cube.max()) < 10  # not ~1000× too bright


# --- wide integer masks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64])
@pytest.mark.parametrize("level", [255, 65535])
def test_wide_integer_masks_scale_as_the_narrowest_type_holding_them(field_capture, binary_mask, dtype, level):
    gap_tv = Reconstructor("gap-tv", bands=BANDS, model_kwargs={"iterations": 3})
    reference = gap_tv.reconstruct(field_capture, binary_mask.astype(np.float32))
    result = gap_tv.reconstruct(field_capture, binary_mask.astype(dtype) * level)
    np.testing.assert_allclose(result.cube, reference.cube, rtol=1e-5, atol=1e-6)
    assert f"mask: {np.dtype(dtype).name} data scaled by 1/{level}" in result.record["warnings"]
    assert result.record["mask"]["scaled"] == f"mask: {np.dtype(dtype).name} data scaled by 1/{level}"


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint64])
def test_wide_integer_masks_within_zero_one_are_used_as_given(field_capture, binary_mask, dtype):
    gap_tv = Reconstructor("gap-tv", bands=BANDS, model_kwargs={"iterations": 3})
    result = gap_tv.reconstruct(field_capture, binary_mask.astype(dtype))
    assert not any("mask" in note for note in result.record["warnings"])
    np.testing.assert_allclose(result.cube, gap_tv.reconstruct(field_capture, binary_mask.astype(np.float32)).cube)


@pytest.mark.parametrize("values, match", [(70000, r"int64 values up to 70000; .*expected values in \[0, 1\]"),
                                           (-255, "negative values")])
def test_wide_integer_masks_beyond_16_bits_or_negative_are_refused(field_capture, binary_mask, values, match):
    mask = binary_mask.astype(np.int64) * values
    with pytest.raises(ValueRangeError, match=match):
        Reconstructor("gap-tv", bands=BANDS).reconstruct(field_capture, mask)
    with pytest.raises(ValueRangeError, match=match):  # model(y, mask): the same rule
        create_model("gap-tv", bands=BANDS)(field_capture, mask)


def test_a_wide_integer_mask_file_reads_as_the_narrow_type(tmp_path, binary_mask):
    np.save(tmp_path / "mask.npy", binary_mask.astype(np.int64) * 255)
    mask, loaded = io.read_mask(tmp_path / "mask.npy")
    np.testing.assert_array_equal(mask, binary_mask.astype(np.float32))
    assert loaded.metadata["mask_scaled_by"] == "1/255"
    np.save(tmp_path / "deep.npy", binary_mask.astype(np.int32) * 100000)
    with pytest.raises(ValueRangeError, match="int32 values up to 100000"):
        io.read_mask(tmp_path / "deep.npy")
    # 8- and 16-bit types keep their own full scale, as before
    np.save(tmp_path / "u16.npy", binary_mask.astype(np.uint16) * 255)
    assert io.read_mask(tmp_path / "u16.npy")[1].metadata["mask_scaled_by"] == "1/65535"


# --- project errors instead of Python ones ------------------------------------------------------------------------
def test_an_empty_mask_is_a_shape_error():
    for empty in (np.zeros((0, 0), np.float32), torch.zeros(0, 5)):
        with pytest.raises(ShapeError, match="mask is empty"):
            CassiOperator(empty)


@pytest.mark.parametrize("make", [lambda: Reconstructor(None), lambda: Reconstructor(3), lambda: create_model(None),
                                  lambda: create_model(3.5)])
def test_a_model_that_is_not_a_name_is_a_usage_error(make):
    with pytest.raises(UsageError, match=r"a model is named by a string .*available: .*gap-tv"):
        make()


def test_unknown_gap_tv_settings_are_a_usage_error_listing_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown GAP-TV configuration keys: bogus; known: .*iterations"):
        Reconstructor("gap-tv", model_kwargs={"bogus": 1})
    with pytest.raises(UsageError, match="bogus"):
        create_model("gap-tv", bogus=1)


@pytest.mark.parametrize("progress", [5, "bar", object()])
def test_a_progress_that_cannot_be_called_is_refused_up_front(field_capture, binary_mask, progress):
    with pytest.raises(UsageError, match=r"progress= must be None or a callable progress\(done, total\)"):
        Reconstructor("gap-tv", bands=BANDS).reconstruct(field_capture, binary_mask, progress=progress)


@pytest.mark.parametrize("read", [io.read_cube, io.read_measurement, io.read_mask, io.read_array, io.list_arrays])
@pytest.mark.parametrize("path", [None, 3, np.zeros(2)])
def test_a_path_that_is_not_a_path_is_a_usage_error(read, path):
    with pytest.raises(UsageError, match=r"path= must be a file path \(a str or pathlib.Path\)"):
        read(path)


def test_writing_to_a_path_that_is_not_a_path_is_a_usage_error():
    with pytest.raises(UsageError, match="path= must be a file path"):
        io.write_cube(None, np.zeros((2, 2, 2), np.float32))


# --- physics settings checked at construction --------------------------------------------------------------------
@pytest.mark.parametrize("settings, match", [
    ({"step": 0}, "dispersion step must be a positive integer number of pixels, got 0"),
    ({"step": -2}, "dispersion step must be a positive integer"),
    ({"step": 1.5}, "dispersion step must be a positive integer"),
    ({"bands": 0}, "bands must be a positive integer, got 0"),
    ({"bands": "x"}, "bands must be a positive integer, got 'x'"),
    ({"bands": True}, "bands must be a positive integer, got True"),
    ({"axis": "diag"}, "dispersion axis must be 'width' or 'height', got 'diag'"),
])
@pytest.mark.parametrize("model", ["gap-tv", "auto"])
def test_bad_physics_are_refused_when_the_reconstructor_is_made(model, settings, match):
    with pytest.raises(ShapeError, match=match):
        Reconstructor(model, **settings)


def test_integral_physics_settings_are_taken_as_integers():
    reconstructor = Reconstructor("gap-tv", bands=np.int64(8), step=2.0)
    assert (reconstructor.bands, reconstructor.step) == (8, 2)
    assert type(reconstructor.step) is int and type(reconstructor.bands) is int


# --- messages name the Python argument ---------------------------------------------------------------------------
def test_a_mask_offset_outside_the_mask_names_the_python_argument(field_capture, binary_mask):
    big = np.zeros((40, 40), np.float32)
    big[:H, :W] = binary_mask
    with pytest.raises(UsageError, match=r"--mask-offset 20,20 \(Python: mask_offset=\(20, 20\)\) puts the"):
        Reconstructor("gap-tv", bands=BANDS).reconstruct(field_capture, big, mask_offset=(20, 20))
    with pytest.raises(ShapeError, match=r"check --bands, --step and --axis \(Python: bands=, step=, axis=\)"):
        Reconstructor("gap-tv", bands=BANDS).reconstruct(field_capture, big)



# --- docstrings say what the code does ---------------------------------------------------------------------------
def test_docstrings_match_what_the_library_returns():
    import hsra_cli.registry

    doc = " ".join(Reconstructor.reconstruct.__doc__.split())
    assert "Returns one :class:`Reconstruction`" in doc and "and a record" not in doc
    assert "C×H×W``" in hsra_cli.registry.__doc__ and "unbatched" in hsra_cli.registry.__doc__
    for text in (io.__doc__, io.read_mask.__doc__):
        text = " ".join(text.split())
        assert "integer data is not rescaled" not in text and "as stored:" not in text
        assert "scaled" in text


def test_model_kwargs_of_a_named_network_are_refused_not_ignored():
    with pytest.raises(UsageError, match="model_kwargs= sets a solver's settings"):
        Reconstructor("hsra-dum-2stg", model_kwargs={"stages": 3})
    Reconstructor("auto", model_kwargs={"iterations": 3})  # the settings of the solver auto may choose
