"""File I/O: what hsra reads, what it writes, and how it fails. Tiny arrays only."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile

from hsra_cli import io
from hsra_cli.errors import InputFileError, OutputExistsError, ShapeError, UsageError, ValueRangeError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALL_SUFFIXES = io.SUPPORTED_SUFFIXES
WAVELENGTHS = [450.0 + 7.5 * b for b in range(28)]


def _cube(h=6, w=7, c=28, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


def _matlab_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


def _folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_cube_round_trips_identically_through_every_format(tmp_path, suffix):
    cube = _cube()
    path = tmp_path / f"cube{suffix}"
    meta = {"dispersion_step": 2, "source": "simulate", "nested": {"tile": [64, 64], "note": None}}

    assert io.write_cube(path, cube, wavelengths_nm=WAVELENGTHS, metadata=meta) == path
    back, loaded = io.read_cube(path)

    assert back.dtype == np.float32 and back.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(back, cube)
    if suffix == ".npy":  # the bare array: nothing else fits in the format
        assert loaded.metadata == {}
        return
    assert loaded.metadata["wavelengths_nm"] == WAVELENGTHS
    assert loaded.metadata["bands"] == 28
    for name, value in meta.items():
        assert loaded.metadata[name] == value


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_2d_measurement_round_trips_identically_through_every_format(tmp_path, suffix):
    measurement = np.random.default_rng(1).random((5, 9)).astype(np.float32) * 14
    path = tmp_path / f"meas{suffix}"
    io.write_array(path, measurement, key="meas", metadata={"dispersion_step": 2})

    back, loaded = io.read_measurement(path)

    np.testing.assert_array_equal(back, measurement)
    assert loaded.key == ("" if suffix in (".npy", ".tif", ".tiff") else "meas")
    if suffix != ".npy":
        assert loaded.metadata["dispersion_step"] == 2


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_3d_shifted_mask_round_trips_as_stored(tmp_path, suffix):
    phi = np.random.default_rng(2).random((6, 13, 4)).astype(np.float32)  # H × W' × C, like mask_3d_shift
    path = tmp_path / f"phi{suffix}"
    io.write_array(path, phi, key="mask_3d_shift")

    back, _ = io.read_mask(path)

    np.testing.assert_array_equal(back, phi)


def test_write_stores_float32_on_disk(tmp_path):
    io.write_array(tmp_path / "a.npz", np.arange(12, dtype=np.float64).reshape(3, 4), key="meas")
    with np.load(tmp_path / "a.npz") as archive:
        assert archive["meas"].dtype == np.float32


def test_written_tiff_is_a_band_stack_with_cyx_axes_and_wavelengths(tmp_path):
    cube = _cube(4, 5, 28)
    path = tmp_path / "cube.tif"
    io.write_cube(path, cube, wavelengths_nm=WAVELENGTHS)

    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape == (28, 4, 5)
        assert tif.shaped_metadata[0]["axes"] == "CYX"
        assert tif.shaped_metadata[0]["wavelengths_nm"] == WAVELENGTHS
        np.testing.assert_array_equal(tif.series[0].asarray()[3], cube[:, :, 3])


def test_tiff_cube_whose_width_equals_band_count_still_reads_back_hwc(tmp_path):
    # Stored C×H×W = 6×5×6: "last axis = bands" would be wrong; the recorded CYX axes decide.
    cube = _cube(5, 6, 6)
    io.write_cube(tmp_path / "c.tif", cube)
    back, _ = io.read_cube(tmp_path / "c.tif")
    np.testing.assert_array_equal(back, cube)


def test_stored_band_count_resolves_a_layout_the_shape_alone_cannot(tmp_path):
    cube = _cube(6, 7, 5)  # 5 bands is not "clearly smaller" than 6×7: shape guessing gives up
    with pytest.raises(ShapeError, match="--bands"):
        io.to_hwc(cube)
    io.write_cube(tmp_path / "c.h5", cube)
    back, _ = io.read_cube(tmp_path / "c.h5")
    np.testing.assert_array_equal(back, cube)


def test_stored_wavelengths_give_the_band_count_of_a_cube_the_shape_misleads(tmp_path):
    cube = _cube(28, 28, 31)  # 28 looks like the field's band count; the 31 wavelengths say otherwise
    wavelengths = np.linspace(400, 700, 31)
    scipy.io.savemat(tmp_path / "c.mat", {"cube": cube, "wavelengths_nm": wavelengths[None, :]})
    back, loaded = io.read_cube(tmp_path / "c.mat")
    np.testing.assert_array_equal(back, cube)
    np.testing.assert_allclose(loaded.metadata["wavelengths_nm"], wavelengths)


# ------------------------------------------------------------------------------------------------------
# MATLAB v7.3


def test_v73_written_by_us_is_hdf5_with_matlab_header_and_reads_in_matlab_orientation(tmp_path):
    cube = _cube(4, 5, 28)
    path = tmp_path / "big.mat"
    io.write_cube(path, cube, wavelengths_nm=WAVELENGTHS, metadata={"dispersion_step": 2}, mat_version="7.3")

    assert h5py.is_hdf5(path)
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file")
    assert header[124:128] == b"\x00\x02IM"  # version 2 (v7.3), little-endian indicator
    with h5py.File(path, "r") as handle:
        assert handle.userblock_size == 512
        assert handle["cube"].shape == (28, 5, 4)  # column-major: h5py sees the axes reversed
        assert handle["cube"].attrs["MATLAB_class"] == b"single"
        assert handle["wavelengths_nm"].shape == (28, 1)  # a MATLAB 1×28 row
        assert handle["hsra_meta"].attrs["MATLAB_class"] == b"char"
    with pytest.raises(NotImplementedError):  # scipy knows it is v7.3 and refuses: proof it is not v5
        scipy.io.loadmat(path)

    back, loaded = io.read_cube(path)
    np.testing.assert_array_equal(back, cube)
    np.testing.assert_array_equal(loaded.data, cube)  # as MATLAB shows it, not as h5py does
    assert loaded.metadata["wavelengths_nm"] == WAVELENGTHS
    assert loaded.metadata["dispersion_step"] == 2
    assert io.list_arrays(path) == {"cube": (4, 5, 28), "wavelengths_nm": (1, 28)}


def test_mat_switches_to_v73_at_the_v5_size_limit(tmp_path, monkeypatch):
    small, large = _cube(2, 2, 3), _cube(4, 4, 3)
    monkeypatch.setattr(io, "_MAT_V5_LIMIT_BYTES", small.nbytes + 1)  # stands in for 2 GiB
    io.write_cube(tmp_path / "small.mat", small)
    io.write_cube(tmp_path / "large.mat", large)

    assert not h5py.is_hdf5(tmp_path / "small.mat")
    assert h5py.is_hdf5(tmp_path / "large.mat")
    np.testing.assert_array_equal(io.read_cube(tmp_path / "large.mat", bands=3)[0], large)
    with pytest.raises(UsageError, match="7.3"):
        io.write_cube(tmp_path / "v5.mat", large, mat_version="5")


def test_hand_built_v73_file_reads_as_matlab_shows_it(tmp_path):
    """A file laid out as MATLAB's `save -v7.3` does: reversed axes, MATLAB_class, a 512-byte userblock."""
    meas = np.arange(3 * 8, dtype=np.float64).reshape(3, 8)  # what MATLAB shows: 3×8
    cube = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    path = tmp_path / "matlab.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, value in (("meas", meas), ("cube", cube)):
            handle.create_dataset(name, data=value.T).attrs["MATLAB_class"] = np.bytes_("double")
        text = handle.create_dataset("label", data=np.frombuffer("hi".encode("utf-16-le"), np.uint16)[:, None])
        text.attrs["MATLAB_class"] = np.bytes_("char")
        group = handle.create_group("cal")  # a MATLAB struct: cal.mask
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        group.create_dataset("mask", data=np.eye(3, 5).T).attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as stream:
        stream.write(_matlab_header())

    assert io.list_arrays(path) == {"meas": (3, 8), "cube": (2, 3, 4), "cal/mask": (3, 5)}
    np.testing.assert_array_equal(io.read_measurement(path)[0], meas)
    np.testing.assert_array_equal(io.read_array(path, key="cube").data, cube)
    np.testing.assert_array_equal(io.read_mask(path, key="cal/mask")[0], np.eye(3, 5))
    with pytest.raises(InputFileError, match="text"):
        io.read_array(path, key="label")


def test_plain_hdf5_is_not_transposed_and_groups_are_searched(tmp_path):
    cube = _cube(3, 4, 28)
    with h5py.File(tmp_path / "plain.h5", "w") as handle:
        handle.create_dataset("results/recon", data=cube)
    assert io.list_arrays(tmp_path / "plain.h5") == {"results/recon": (3, 4, 28)}
    np.testing.assert_array_equal(io.read_cube(tmp_path / "plain.h5")[0], cube)
    np.testing.assert_array_equal(io.read_cube(tmp_path / "plain.h5", key="/results/recon")[0], cube)


# ------------------------------------------------------------------------------------------------------
# which array


def test_explicit_key_picks_that_array(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.ones((2, 3)), b=np.zeros((4, 5)))
    loaded = io.read_array(path, key="b")
    assert loaded.key == "b" and loaded.data.shape == (4, 5)


def test_a_result_file_with_pred_and_truth_gives_each_role_its_own_array(tmp_path):
    """MST-style Test_result.mat: a prediction read takes pred, a truth read takes truth, and a plain cube read
    (which could mean either) asks for the key instead of taking the truth as the reconstruction."""
    from hsra_cli.errors import AmbiguousArrayError
    from hsra_cli.inputs import Source, scenes_of

    path = tmp_path / "Test_result.mat"
    truth = np.random.default_rng(0).random((2, 16, 16, 28)).astype(np.float32)
    scipy.io.savemat(path, {"pred": truth * 0.5, "truth": truth})
    assert io.read_array(path, role="prediction").key == "pred"
    assert io.read_array(path, role="truth").key == "truth"
    with pytest.raises(AmbiguousArrayError, match="pred: 2×16×16×28.*truth"):
        io.read_array(path, role="cube")
    assert io.read_array(path, key="pred", role="cube").key == "pred"  # a key settles it
    assert io.declared_shape(path, role="prediction") == (2, 16, 16, 28)
    assert len(scenes_of(Source(spec=str(path), path=path), role="truth")) == 2
    # a file with one of them is read as before
    scipy.io.savemat(tmp_path / "gt.mat", {"truth": truth[0]})
    assert io.read_cube(tmp_path / "gt.mat")[1].key == "truth"


def test_missing_explicit_key_lists_what_the_file_holds(tmp_path):
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"a": np.ones((2, 3)), "b": np.zeros((4, 5))})
    with pytest.raises(InputFileError) as info:
        io.read_array(path, key="meas")
    message = str(info.value)
    assert "'meas'" in message and "a: 2×3" in message and "b: 4×5" in message and "\n" not in message


def test_usual_name_for_the_role_wins(tmp_path):
    path = tmp_path / "capture.mat"
    scipy.io.savemat(path, {"other": np.ones((4, 4)), "meas": np.full((4, 6), 2.0), "mask": np.full((4, 4), 0.5)})
    assert io.read_measurement(path)[1].key == "meas"
    assert io.read_mask(path)[1].key == "mask"
    assert io.read_array(path).key == "meas"  # role "any": measurement names come before mask names


def test_only_numeric_array_is_chosen_and_metadata_variables_never_count(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, scene=np.ones((4, 5, 28)), wavelengths_nm=np.asarray(WAVELENGTHS), names=np.asarray(["a", "b"]))
    cube, loaded = io.read_cube(path)
    assert loaded.key == "scene" and cube.shape == (4, 5, 28)
    assert loaded.metadata["wavelengths_nm"] == WAVELENGTHS


def test_several_candidates_without_usual_name_is_an_error_listing_them(tmp_path):
    path = tmp_path / "cap.mat"
    scipy.io.savemat(path, {"a": np.ones((256, 310), np.float32), "b": np.ones((256, 256), np.float32)})
    with pytest.raises(InputFileError) as info:
        io.read_array(path)
    assert str(info.value) == f"{path} holds several arrays (a: 256×310, b: 256×256); pass --key to choose one"


def test_list_arrays_names_every_numeric_array_with_its_shape(tmp_path):
    path = tmp_path / "m.mat"
    scipy.io.savemat(path, {"meas": np.ones((4, 6)), "note": "text", "s": {"mask": np.ones((4, 4))}})
    assert io.list_arrays(path) == {"meas": (4, 6), "s/mask": (4, 4)}


# ------------------------------------------------------------------------------------------------------
# layout


def test_to_hwc_keeps_hwc_and_moves_chw():
    cube = _cube(4, 5, 28)
    np.testing.assert_array_equal(io.to_hwc(cube), cube)
    chw = np.ascontiguousarray(np.moveaxis(cube, -1, 0))
    out = io.to_hwc(chw)
    np.testing.assert_array_equal(out, cube)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]


def test_to_hwc_finds_31_bands_as_the_clearly_smallest_axis():
    cube = np.zeros((64, 70, 31), np.float32)
    assert io.to_hwc(cube).shape == (64, 70, 31)
    assert io.to_hwc(np.zeros((31, 64, 70), np.float32)).shape == (64, 70, 31)


def test_to_hwc_uses_explicit_bands_and_prefers_the_last_axis():
    assert io.to_hwc(np.zeros((3, 8, 9)), bands=3).shape == (8, 9, 3)
    assert io.to_hwc(np.zeros((3, 8, 3)), bands=3).shape == (3, 8, 3)  # both ends match: last wins
    with pytest.raises(ShapeError, match="no first or last axis of 5 bands"):
        io.to_hwc(np.zeros((4, 5, 6)), bands=5)


def test_to_hwc_refuses_to_guess_and_asks_for_bands():
    with pytest.raises(ShapeError, match=r"40×40×30.*--bands"):
        io.to_hwc(np.zeros((40, 40, 30)))
    with pytest.raises(ShapeError, match="3-D"):
        io.to_hwc(np.zeros((4, 4)))


def test_read_cube_drops_a_batch_axis_of_one(tmp_path):
    cube = _cube(4, 5, 28)
    np.save(tmp_path / "pred.npy", cube[None])
    np.testing.assert_array_equal(io.read_cube(tmp_path / "pred.npy")[0], cube)


def test_integer_data_keeps_its_values_and_reports_its_dtype(tmp_path):
    truth = np.random.default_rng(3).integers(0, 256, (4, 5, 28), dtype=np.uint8)
    np.savez(tmp_path / "t.npz", truth=truth)
    cube, loaded = io.read_cube(tmp_path / "t.npz")
    assert cube.dtype == np.float32 and cube.max() > 1  # not rescaled: the caller decides
    np.testing.assert_array_equal(cube, truth.astype(np.float32))
    assert loaded.metadata["integer_dtype"] == "uint8"

    tifffile.imwrite(tmp_path / "m.tif", np.full((3, 4), 4000, np.uint16))
    meas, loaded = io.read_measurement(tmp_path / "m.tif")
    assert meas[0, 0] == 4000 and loaded.metadata["integer_dtype"] == "uint16"


def test_matlab_logical_mask_reads_as_zero_one_floats_without_integer_tag(tmp_path):
    scipy.io.savemat(tmp_path / "m.mat", {"mask": np.eye(4, dtype=bool)})
    mask, loaded = io.read_mask(tmp_path / "m.mat")
    np.testing.assert_array_equal(mask, np.eye(4, dtype=np.float32))
    assert "integer_dtype" not in loaded.metadata


def test_measurement_with_a_singleton_axis_is_squeezed(tmp_path):
    meas = np.ones((4, 6, 1), np.float32)
    np.save(tmp_path / "m.npy", meas)
    assert io.read_measurement(tmp_path / "m.npy")[0].shape == (4, 6)


# ------------------------------------------------------------------------------------------------------
# errors


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        io.read_cube(tmp_path / "nope.mat")


def test_unsupported_suffix_is_a_usage_error_listing_supported_ones(tmp_path):
    (tmp_path / "cube.png").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"\.mat, \.h5, \.hdf5, \.tif, \.tiff, \.npy, \.npz"):
        io.read_array(tmp_path / "cube.png")
    with pytest.raises(UsageError):
        io.output_format("out.png")
    assert [io.output_format(f"x{s.upper()}") for s in ALL_SUFFIXES] == ["mat", "h5", "h5", "tif", "tif", "npy", "npz"]


@pytest.mark.parametrize("suffix,label", [
    (".mat", "a MATLAB file"), (".h5", "an HDF5 file"), (".tif", "a TIFF file"),
    (".npy", "a NumPy .npy file"), (".npz", "a NumPy .npz archive"),
])
def test_corrupt_bytes_give_one_line_cannot_read_error(tmp_path, suffix, label):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\x00garbage, not a real file\xff" * 8)
    with pytest.raises(InputFileError) as info:
        io.read_array(path)
    message = str(info.value)
    assert message.startswith(f"cannot read {path} as {label}: ") and "\n" not in message


def test_empty_mat_file_is_reported_not_crashed_on(tmp_path):
    (tmp_path / "empty.mat").write_bytes(b"")
    with pytest.raises(InputFileError, match="as a MATLAB file"):
        io.read_mask(tmp_path / "empty.mat")


def test_wrong_rank_for_each_role_is_a_shape_error(tmp_path):
    np.save(tmp_path / "flat.npy", np.ones((4, 6), np.float32))
    np.save(tmp_path / "cube.npy", np.ones((4, 6, 28), np.float32))
    np.save(tmp_path / "vec.npy", np.ones(6, np.float32))
    with pytest.raises(ShapeError, match="cube must be 3-D"):
        io.read_cube(tmp_path / "flat.npy")
    with pytest.raises(ShapeError, match="measurement must be 2-D"):
        io.read_measurement(tmp_path / "cube.npy")
    with pytest.raises(ShapeError, match="mask must be"):
        io.read_mask(tmp_path / "vec.npy")


def test_nan_or_inf_anywhere_is_a_value_range_error_with_the_count(tmp_path):
    meas = np.ones((4, 6), np.float32)
    meas[0, 0], meas[2, 3] = np.nan, np.inf
    scipy.io.savemat(tmp_path / "m.mat", {"meas": meas})
    with pytest.raises(ValueRangeError, match="holds 2 NaN/Inf values; expected finite numbers"):
        io.read_measurement(tmp_path / "m.mat")
    with pytest.raises(ValueRangeError, match="NaN/Inf"):
        io.write_array(tmp_path / "out.npz", meas, key="meas")
    assert not (tmp_path / "out.npz").exists()


def test_complex_data_is_refused(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((3, 4), np.complex64))
    with pytest.raises(ValueRangeError, match="complex"):
        io.read_measurement(tmp_path / "c.npy")


_UNPICKLED: list[str] = []


def _tripwire() -> str:
    _UNPICKLED.append("unpickled")
    return "boom"


class _Tripwire:
    def __reduce__(self):
        return (_tripwire, ())


def test_object_arrays_are_refused_and_never_unpickled(tmp_path):
    pickle.loads(pickle.dumps(_Tripwire()))  # the tripwire works: unpickling it is recorded
    assert _UNPICKLED == ["unpickled"]
    _UNPICKLED.clear()
    payload = np.empty(1, dtype=object)
    payload[0] = _Tripwire()
    np.savez(tmp_path / "evil.npz", meas=payload)
    np.save(tmp_path / "evil.npy", payload, allow_pickle=True)

    with pytest.raises(InputFileError, match="object"):
        io.read_array(tmp_path / "evil.npz")
    with pytest.raises(InputFileError, match="object"):
        io.read_array(tmp_path / "evil.npy")
    assert io.list_arrays(tmp_path / "evil.npz") == {}
    assert _UNPICKLED == []


def test_a_file_that_is_no_npz_archive_is_not_offered_to_unpickling(tmp_path):
    (tmp_path / "notes.npz").write_text("a text file with the wrong name\n")
    with pytest.raises(InputFileError, match="as a NumPy .npz archive: it starts with neither a zip") as caught:
        io.read_array(tmp_path / "notes.npz")
    assert "pickle" not in str(caught.value)


def test_file_without_numeric_arrays_says_so(tmp_path):
    scipy.io.savemat(tmp_path / "t.mat", {"note": "just text"})
    with pytest.raises(InputFileError, match="'note'.* holds text data, not a numeric array"):
        io.read_array(tmp_path / "t.mat")
    scipy.io.savemat(tmp_path / "t2.mat", {"note": "text", "names": "more text"})
    with pytest.raises(InputFileError, match="holds no numeric array.*note: 1 text"):
        io.read_array(tmp_path / "t2.mat")


def test_stored_wavelengths_must_match_the_band_count(tmp_path):
    with pytest.raises(ShapeError, match="3 wavelengths for a cube of 28 bands"):
        io.write_cube(tmp_path / "c.npz", _cube(), wavelengths_nm=[1.0, 2.0, 3.0])
    np.savez(tmp_path / "odd.npz", cube=_cube(), wavelengths_nm=np.arange(31.0))
    with pytest.raises(ShapeError, match="31 wavelengths but its cube has 28 bands"):
        io.read_cube(tmp_path / "odd.npz")


# ------------------------------------------------------------------------------------------------------
# atomic, never-overwriting output


def test_existing_output_without_overwrite_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "cube.npz"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError) as info:
        io.write_cube(path, _cube())
    assert str(info.value) == f"{path} exists; pass --overwrite to replace it"
    assert info.value.exit_code == 2
    assert path.read_bytes() == b"precious"
    assert _folder_listing(tmp_path) == ["cube.npz"]
    with pytest.raises(OutputExistsError):
        io.check_writable(path)

    io.check_writable(path, overwrite=True)
    io.write_cube(path, _cube(), overwrite=True)
    np.testing.assert_array_equal(io.read_cube(path)[0], _cube())


def test_failure_inside_atomic_output_leaves_no_temp_file_and_no_output(tmp_path):
    path = tmp_path / "render.png"
    with pytest.raises(RuntimeError, match="crash"):
        with io.atomic_output(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".render.png.") and tmp.name.endswith(".tmp")
            tmp.write_bytes(b"half a file")
            raise RuntimeError("crash mid-write")
    assert _folder_listing(tmp_path) == []


def test_failure_while_overwriting_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"old": true}')
    with pytest.raises(KeyError):
        with io.atomic_output(path, overwrite=True) as tmp:
            tmp.write_text('{"new": ')
            raise KeyError("boom")
    assert json.loads(path.read_text()) == {"old": True}
    assert _folder_listing(tmp_path) == ["report.json"]


def test_atomic_output_renames_into_place_and_creates_the_folder(tmp_path):
    path = tmp_path / "out" / "sub" / "a.json"
    with io.atomic_output(path) as tmp:
        assert not path.exists()  # nothing visible under the final name until the write is complete
        tmp.write_text("{}")
    assert path.read_text() == "{}"
    assert _folder_listing(path.parent) == ["a.json"]


def test_check_writable_refuses_a_folder(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        io.check_writable(tmp_path)


# ------------------------------------------------------------------------------------------------------
# the field's real files


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def test_real_kaist_mask_reads_as_256x256_aperture():
    mask, loaded = io.read_mask(_require(DATA / "kaist" / "mask_256.mat"))
    assert loaded.key == "mask" and mask.shape == (256, 256) and mask.dtype == np.float32
    assert 0.0 < mask.min() and mask.max() <= 1.0  # grey-level, not binary


def test_real_tsa_capture_reads_as_660x714_measurement():
    meas, loaded = io.read_measurement(_require(DATA / "tsa-real" / "scene1.mat"))
    assert loaded.key == "meas_real" and meas.shape == (660, 714)
    assert io.read_mask(_require(DATA / "tsa-real" / "mask_660.mat"))[0].shape == (660, 660)


def test_real_kaist_truth_reads_as_uint8_stack_with_wavelengths():
    loaded = io.read_array(_require(DATA / "kaist" / "kaist_scenes01-05_truth_uint8.npz"))
    assert loaded.key == "truth" and loaded.data.shape == (5, 256, 256, 28)
    assert loaded.metadata["integer_dtype"] == "uint8" and len(loaded.metadata["wavelengths_nm"]) == 28


def test_cubes_are_compressed_only_when_it_pays(tmp_path):
    from hsra_cli.io import read_cube, worth_compressing, write_cube

    rng = np.random.default_rng(0)
    smooth = np.repeat(np.round(rng.uniform(0, 1, (64, 1, 28)) * 255) / 255, 64, axis=1).astype(np.float32)
    noise = rng.uniform(0, 1, (64, 64, 28)).astype(np.float32)  # like a reconstruction's float32 values
    assert worth_compressing(smooth) and not worth_compressing(noise)
    for fmt in ("mat", "h5"):
        small = write_cube(tmp_path / f"smooth.{fmt}", smooth)
        plain = write_cube(tmp_path / f"noise.{fmt}", noise)
        assert small.stat().st_size < 0.2 * smooth.nbytes
        assert plain.stat().st_size > noise.nbytes  # stored as is, no time spent on zlib
        assert np.array_equal(read_cube(small)[0], smooth) and np.array_equal(read_cube(plain)[0], noise)


def test_a_mask_beyond_one_is_scaled_when_integer_and_refused_when_float(tmp_path):
    """A 0/255 uint8 mask is a transmission in units of its type (scaled, as integer cubes are); a 0/1 integer
    mask is taken as it is; a float mask above 1 is refused (it used to give a cube ×255 too dark, silently)."""
    import scipy.io

    from hsra_cli.errors import ValueRangeError
    from hsra_cli.io import read_mask

    rng = np.random.default_rng(0)
    binary = (rng.random((16, 16)) > 0.5).astype(np.float32)
    scipy.io.savemat(tmp_path / "u8.mat", {"mask": (binary * 255).astype(np.uint8)})
    scipy.io.savemat(tmp_path / "01.mat", {"mask": binary.astype(np.uint8)})
    scipy.io.savemat(tmp_path / "x2.mat", {"mask": binary * 2})
    scaled, loaded = read_mask(tmp_path / "u8.mat")
    assert np.array_equal(scaled, binary) and loaded.metadata["mask_scaled_by"] == "1/255"
    plain, loaded = read_mask(tmp_path / "01.mat")
    assert np.array_equal(plain, binary) and "mask_scaled_by" not in loaded.metadata
    with pytest.raises(ValueRangeError, match=r"values up to 2; a mask is a transmission: expected values in \[0, 1\]"):
        read_mask(tmp_path / "x2.mat")


def test_a_nan_in_one_scene_of_a_stack_fails_that_scene_alone(tmp_path):
    from hsra_cli.inputs import Scene, SceneReader

    stack = np.random.default_rng(1).random((3, 16, 16, 28)).astype(np.float32)
    stack[1, 4, 5, 6] = np.nan
    path = tmp_path / "tn.npy"
    np.save(path, stack)
    reader = SceneReader()
    for index in (0, 2):
        cube, _, _ = reader.read(Scene(path, index))
        np.testing.assert_array_equal(cube, stack[index])
    with pytest.raises(ValueRangeError, match=r"tn.npy:1 holds 1 NaN/Inf values"):
        reader.read(Scene(path, 1))
    with pytest.raises(ValueRangeError, match="holds 1 NaN/Inf"):  # read whole, the file is refused as before
        io.read_array(path)
