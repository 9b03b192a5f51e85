"""Calibration finds the geometry a capture was taken with: small synthetic cases, the CLI, and real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsra_cli.calibrate import band_shifts, calibrate
from hsra_cli.cli import main
from hsra_cli.errors import ShapeError, UsageError, ValueRangeError
from hsra_cli.io import write_array
from hsra_cli.simulate import generate_mask, simulate_measurement
from hsra_cli.synth import procedural_scene

BANDS = 8  # small cases: 8 bands keep the dispersion spread within a 48-pixel scene


def _capture(top, left, step, axis, seed=0, size=(48, 56), mask=None, noise="shot"):
    mask = generate_mask(96, 112, "random-grey", seed=7) if mask is None else mask
    scene = procedural_scene(*size, wavelengths_nm=np.linspace(460, 640, BANDS), rng=np.random.default_rng(seed))
    window = mask[top : top + size[0], left : left + size[1]]
    measurement, _ = simulate_measurement(scene, window, step=step, axis=axis, noise=noise, seed=seed)
    return measurement, mask


def test_band_shifts_come_from_the_operator():
    assert band_shifts(5, 3).tolist() == [0, 3, 6, 9, 12]
    assert band_shifts(28, 2)[-1] == 54


@pytest.mark.parametrize("top, left, step, axis", [(11, 37, 2, "width"), (40, 5, 1, "height"), (3, 50, 3, "width")])
def test_a_small_capture_is_placed_exactly(top, left, step, axis):
    measurement, mask = _capture(top, left, step, axis, seed=top)
    result = calibrate([measurement], mask, bands=BANDS)
    assert (result.offset, result.step, result.axis) == ((top, left), step, axis)
    assert result.confident, result.reason
    assert result.flags() == f"--mask-offset {top},{left} --step {step} --axis {axis}"
    # The runner-up geometry scores clearly lower.
    assert result.candidates[0]["score"] - result.candidates[1]["score"] > 0.05


def test_several_captures_are_calibrated_jointly_and_fixed_settings_are_kept():
    mask = generate_mask(96, 112, "random-grey", seed=7)
    captures = [_capture(20, 30, 2, "width", seed=s, mask=mask)[0] for s in (1, 2)]
    result = calibrate(captures, mask, bands=BANDS, steps=[2], axes=["width"])
    assert result.offset == (20, 30) and result.captures == 2
    assert [(c["axis"], c["step"]) for c in result.candidates] == [("width", 2)]


def test_a_sub_pixel_shift_of_the_mask_is_measured():
    from scipy import ndimage

    base = generate_mask(96, 112, "random-grey", seed=3)
    shifted = ndimage.shift(base, (-0.4, 0.3), order=1, mode="nearest").astype(np.float32)  # content moves up/right
    measurement, _ = _capture(20, 30, 2, "width", mask=shifted, noise="none")
    result = calibrate([measurement], base, bands=BANDS, steps=[2], axes=["width"])
    assert result.offset == (20, 30)
    row, col = result.subpixel_offset
    assert abs(row - 20.4) < 0.25 and abs(col - 29.7) < 0.25


def test_a_capture_without_the_mask_pattern_is_not_trusted():
    mask = generate_mask(96, 112, "random-grey", seed=7)
    unrelated, _ = _capture(20, 30, 2, "width", mask=generate_mask(96, 112, "random-grey", seed=99))
    result = calibrate([unrelated], mask, bands=BANDS)
    assert not result.confident and result.reason


def test_cli_prints_no_flags_for_an_inconclusive_calibration(tmp_path, capsys):
    """A mask that is not the capture's: no flags on stdout (a script's `$(hsra calibrate …)` gets nothing to pass
    on), the best guess in one error line, exit 1; the JSON is still written to look at."""
    mask = generate_mask(96, 112, "random-grey", seed=7)
    unrelated, _ = _capture(20, 30, 2, "width", mask=generate_mask(96, 112, "random-grey", seed=99))
    write_array(tmp_path / "cap.mat", unrelated, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    code = main(["calibrate", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--bands", "8",
                 "-o", str(tmp_path / "c.json"), "-q", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.startswith("hsra: error: calibration is not conclusive") and "best guess --mask-offset" in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert json.loads((tmp_path / "c.json").read_text())["confident"] is False


def test_the_python_call_takes_one_capture_and_single_settings_as_they_come():
    measurement, mask = _capture(20, 30, 2, "width")
    result = calibrate(measurement, mask, bands=BANDS, steps=2, axes="width")  # not lists
    assert (result.offset, result.step, result.axis) == ((20, 30), 2, "width")
    assert [(c["axis"], c["step"]) for c in result.candidates] == [("width", 2)]
    with pytest.raises(UsageError, match="steps must be dispersion steps"):
        calibrate(measurement, mask, bands=BANDS, steps="two")


def test_bad_inputs_are_clear_errors():
    measurement, mask = _capture(20, 30, 2, "width")
    with pytest.raises(ShapeError, match="2-D coded aperture"):  # a bad mask is data (exit 1), as elsewhere
        calibrate([measurement], np.ones((4, 96, 112), np.float32), bands=BANDS)
    with pytest.raises(ValueRangeError, match="mask is all zero"):
        calibrate([measurement], np.zeros_like(mask), bands=BANDS)
    with pytest.raises(ValueRangeError, match="negative values"):  # as hsra reconstruct refuses it
        calibrate([measurement - measurement.max()], mask, bands=BANDS)
    with pytest.raises(ShapeError, match="does not fit inside"):
        calibrate([measurement], mask[:20, :20], bands=BANDS)
    with pytest.raises(ValueRangeError, match="constant"):
        calibrate([np.ones_like(measurement)], mask, bands=BANDS)
    with pytest.raises(ShapeError, match="one shape"):
        calibrate([measurement, measurement[:-1]], mask, bands=BANDS)


def test_cli_prints_the_flags_writes_the_landscape_and_reconstruct_auto_records_it(tmp_path, capsys, monkeypatch):
    measurement, mask = _capture(20, 30, 2, "width")
    write_array(tmp_path / "cap.mat", measurement, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    out = tmp_path / "calib.json"
    code = main(["calibrate", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--bands", "8",
                 "-o", str(out), "-q"])
    captured = capsys.readouterr()
    assert code == 0 and captured.out.strip() == "--mask-offset 20,30 --step 2 --axis width"
    data = json.loads(out.read_text())
    assert data["offset"] == [20, 30] and data["confident"] and len(data["profile"]["ncc"]) > 0
    assert data["source"]["capture_files"] == [str(tmp_path / "cap.mat")]
    # An existing JSON is not replaced without --overwrite.
    code = main(["calibrate", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--bands", "8",
                 "-o", str(out)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err

    # Without -o only the flags are written, so `$(hsra calibrate ...)` works on every call of a script.
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for _ in range(2):
        code = main(["calibrate", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--bands", "8",
                     "-q"])
        assert code == 0 and capsys.readouterr().out.strip() == "--mask-offset 20,30 --step 2 --axis width"
    assert not list((tmp_path / "cwd").iterdir())

    code = main(["reconstruct", str(tmp_path / "cap.mat"), "--mask", str(tmp_path / "mask.mat"), "--bands", "8",
                 "--mask-offset", "auto", "-o", str(tmp_path / "out"), "-q", "--no-previews"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "cap.json").read_text())
    assert record["calibration"]["offset"] == [20, 30] and record["mask"]["offset"] == [20, 30]
    assert record["arguments"]["mask_offset"] == "auto"


def test_reconstruct_auto_in_a_batch_leaves_bad_inputs_out_of_the_calibration_and_fails_them_alone(tmp_path, capsys):
    """--mask-offset auto on several inputs: one unreadable capture and one of another shape fail alone (named,
    counted in the summary, exit 1); the others are calibrated together and reconstructed."""
    mask = generate_mask(96, 112, "random-grey", seed=7)
    write_array(tmp_path / "mask.mat", mask, key="mask")
    for name, seed in (("a", 1), ("b", 2)):
        write_array(tmp_path / f"{name}.mat", _capture(20, 30, 2, "width", seed=seed, mask=mask)[0], key="meas")
    write_array(tmp_path / "narrow.mat", _capture(20, 30, 2, "width", seed=3, mask=mask, size=(48, 40))[0], key="meas")
    (tmp_path / "broken.mat").write_bytes((tmp_path / "a.mat").read_bytes()[:300])
    code = main(["reconstruct", str(tmp_path / "broken.mat"), str(tmp_path / "a.mat"), str(tmp_path / "narrow.mat"),
                 str(tmp_path / "b.mat"), "--mask", str(tmp_path / "mask.mat"), "--bands", "8", "--model", "gap-tv",
                 "--mask-offset", "auto", "-o", str(tmp_path / "out"), "--no-previews", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "failed" in err and "broken.mat" in err and "narrow.mat: its shape (48, 54)" in err, err
    assert "calibrated on 2 capture(s)" in err and "--mask-offset 20,30" in err
    assert "2 done, 0 skipped, 2 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "a.mat", "b.json", "b.mat"]
    record = json.loads((tmp_path / "out" / "a.json").read_text())
    assert record["calibration"]["capture_files"] == [str(tmp_path / "a.mat"), str(tmp_path / "b.mat")]
    # every input bad: the batch's failure lines and summary, as without auto; nothing written
    (tmp_path / "broken2.mat").write_bytes(b"not a mat file")
    code = main(["reconstruct", str(tmp_path / "broken.mat"), str(tmp_path / "broken2.mat"), "--mask",
                 str(tmp_path / "mask.mat"), "--bands", "8", "--model", "gap-tv", "--mask-offset", "auto", "-o",
                 str(tmp_path / "out2"), "--no-previews", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.mat" in err and "broken2.mat" in err and "0 done, 0 skipped, 2 failed" in err, err
    assert not (tmp_path / "out2").exists()


def test_real_captures_are_found_inside_a_larger_random_mask(shared_data):
    from hsra_cli.io import read_mask, read_measurement

    mask, _ = read_mask(shared_data / "tsa-real" / "mask_660.mat")
    rng = np.random.default_rng(1)
    larger = rng.choice(mask.ravel(), size=(760, 800)).astype(np.float32)
    larger[57 : 57 + 660, 101 : 101 + 660] = mask
    measurement, _ = read_measurement(shared_data / "tsa-real" / "scene3.mat")
    result = calibrate([measurement], larger)
    assert (result.offset, result.step, result.axis) == ((57, 101), 2, "width")
    assert result.confident
    # The true step outside the search: step 1 leaves half the light unexplained, which is no confident result.
    result = calibrate([measurement], larger, max_step=1)
    assert result.step == 1 and not result.confident and "explains" in result.reason


def test_kaist_through_the_real_mask_with_shot_noise(kaist, shared_data):
    from hsra_cli.io import read_mask

    truth, _, _ = kaist
    mask, _ = read_mask(shared_data / "tsa-real" / "mask_660.mat")
    measurement, _ = simulate_measurement(truth[1], mask[300:556, 123:379], step=3, axis="height", noise="shot")
    result = calibrate([measurement], mask)
    assert (result.offset, result.step, result.axis) == ((300, 123), 3, "height")


@pytest.mark.parametrize("step, chosen", [(2, "hsra-dum-2stg"), (1, "gap-tv")])
def test_mask_offset_auto_with_the_default_model_searches_the_step_and_then_chooses(tmp_path, step, chosen):
    """``--model auto`` (the default) lets the calibration find the step, as a solver does, and runs the network
    only when the found geometry is the one it was trained for."""
    from hsra_cli.calibrate import auto_geometry
    from hsra_cli.reconstruct import Reconstructor
    from hsra_cli.weights import find_model_folder

    if find_model_folder("hsra-dum-2stg") is None:
        pytest.skip("the shipped default weights are not installed")
    mask = generate_mask(128, 144, "random-grey", seed=5)
    scene = procedural_scene(64, 64, rng=np.random.default_rng(4))  # 28 bands, the network's geometry
    measurement, _ = simulate_measurement(scene, mask[30:94, 40:104], step=step, noise="shot", seed=4)
    write_array(tmp_path / "cap.mat", measurement, key="meas")
    write_array(tmp_path / "mask.mat", mask, key="mask")
    start = Reconstructor()
    assert start.choice["chosen"] == "hsra-dum-2stg"
    reconstructor, offset, record = auto_geometry(start, [tmp_path / "cap.mat"], tmp_path / "mask.mat")
    assert offset == (30, 40) and record["step"] == step
    assert reconstructor.choice["chosen"] == chosen and reconstructor.step == step
    assert (reconstructor is start) == (step == 2)


# --- what the CLI takes as inputs and where it may write ---------------------------------------------------------


def _capture_files(folder):
    measurement, mask = _capture(20, 30, 2, "width")
    folder.mkdir(exist_ok=True)
    write_array(folder / "cap.mat", measurement, key="meas")
    write_array(folder / "mask.mat", mask, key="mask")
    return folder / "cap.mat", folder / "mask.mat"


@pytest.mark.parametrize("target", ["cap.mat", "mask.mat"])
def test_cli_never_writes_its_json_over_a_capture_or_the_mask(tmp_path, capsys, target):
    from test_cli_pipeline import one_line_error, run

    capture, mask = _capture_files(tmp_path)
    before = {path: path.read_bytes() for path in (capture, mask)}
    code, out, err = run(["calibrate", capture, "--mask", mask, "--bands", "8", "-o", tmp_path / target,
                          "--overwrite"], capsys)
    assert code == 2 and out == ""
    assert "would replace the input" in one_line_error(err) and target in err
    assert {path: path.read_bytes() for path in (capture, mask)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap.mat", "mask.mat"]


@pytest.mark.parametrize("target", ["calib.txt", "calib"])
def test_cli_writes_its_json_only_into_a_json_file(tmp_path, capsys, target):
    """The landscapes are JSON: a name that says otherwise (calib.txt, no suffix) is refused before any work."""
    from test_cli_pipeline import one_line_error, run

    capture, mask = _capture_files(tmp_path)
    code, out, err = run(["calibrate", capture, "--mask", mask, "--bands", "8", "-o", tmp_path / target], capsys)
    line = one_line_error(err)
    assert code == 2 and out == ""
    assert target in line and "expected a name ending in .json" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap.mat", "mask.mat"]


def test_cli_skips_the_mask_file_in_a_folder_or_pattern_of_captures(tmp_path, capsys):
    from test_cli_pipeline import one_line_error, run

    capture, mask = _capture_files(tmp_path / "captures")
    for spec in (tmp_path / "captures", str(tmp_path / "captures" / "*.mat")):
        code, out, err = run(["calibrate", spec, "--mask", mask, "--bands", "8"], capsys)
        assert code == 0, err
        assert out.strip() == "--mask-offset 20,30 --step 2 --axis width"
        assert f"skipping {mask}: it is the --mask file" in err and "1 capture(s)" in err
    code, out, err = run(["calibrate", tmp_path / "captures", "--mask", mask, "--bands", "8", "-q"], capsys)
    assert code == 0 and err == "" and out.strip() == "--mask-offset 20,30 --step 2 --axis width"
    # The mask alone is no capture: one line saying so.
    code, out, err = run(["calibrate", mask, "--mask", mask, "--bands", "8"], capsys)
    assert code == 2 and "the only input given is the --mask file" in one_line_error(err)


# --- the QA sweep: band count, fit quality, contradictions, data checks, names as typed ----------------------------


def test_a_step_outside_the_search_is_not_a_confident_result(tmp_path, capsys):
    """--max-step 1 on a capture of step 2: the best step-1 fit leaves light no band explains, so no flags (exit 1)."""
    from test_cli_pipeline import run

    measurement, mask = _capture(20, 30, 2, "width")
    result = calibrate([measurement], mask, bands=BANDS, axes="width", max_step=1)  # no runner-up to tie with
    assert result.step == 1 and not result.confident and "none of its 8 bands explains" in result.reason
    assert result.profile["fit"]["unexplained"] > 0.25 * result.profile["fit"]["lit"]
    capture, mask_file = _capture_files(tmp_path)
    code, out, err = run(["calibrate", capture, "--mask", mask_file, "--bands", "8", "--max-step", "1", "--axis",
                          "width", "-q"], capsys)
    assert code == 1 and out == "" and "not conclusive" in err and err.count("\n") == 1


@pytest.mark.parametrize("options", [["--step", "6", "--max-step", "2"], ["--step", "3", "--max-step", "2"]])
def test_a_step_above_max_step_is_refused(tmp_path, capsys, options):
    from test_cli_pipeline import one_line_error, run

    capture, mask = _capture_files(tmp_path)
    code, out, err = run(["calibrate", capture, "--mask", mask, "--bands", "8", *options], capsys)
    assert code == 2 and out == "" and "contradict" in one_line_error(err)
    # --step alone is above the default --max-step, and fine: it is not searched
    code, out, err = run(["calibrate", capture, "--mask", mask, "--bands", "8", "--step", "2", "--max-step", "2",
                          "-q"], capsys)
    assert code == 0 and out.strip() == "--mask-offset 20,30 --step 2 --axis width", err


def test_the_band_count_a_simulated_capture_records_is_used_and_its_folder_mask_skipped(tmp_path, capsys):
    """hsra simulate records the band count (8 here, not the default 28) and writes mask.mat (the window) beside the
    capture; calibrate on that folder with the larger mask takes the count, skips mask.mat, and finds the window.
    A --bands that disagrees with the record is refused."""
    from test_cli_pipeline import one_line_error, run

    mask = generate_mask(96, 112, "random-grey", seed=7)
    write_array(tmp_path / "big.mat", mask, key="mask")
    scene = procedural_scene(48, 56, wavelengths_nm=np.linspace(460, 640, BANDS), rng=np.random.default_rng(0))
    write_array(tmp_path / "scene.mat", scene, key="cube")
    code, _, err = run(["simulate", tmp_path / "scene.mat", "--mask", tmp_path / "big.mat", "--mask-offset", "20,30",
                        "--noise", "shot", "-o", tmp_path / "sim", "-q"], capsys)
    assert code == 0, err
    code, out, err = run(["calibrate", tmp_path / "sim", "--mask", tmp_path / "big.mat"], capsys)
    assert code == 0, err
    assert out.strip() == "--mask-offset 20,30 --step 2 --axis width"
    assert "8 bands, as scene.mat records" in err and "it is the mask hsra simulate wrote" in err
    code, out, err = run(["calibrate", tmp_path / "sim" / "scene.mat", "--mask", tmp_path / "big.mat", "--bands",
                          "28"], capsys)
    line = one_line_error(err)
    assert code == 2 and out == "" and "--bands 28" in line and "records 8 bands" in line


def test_bad_files_are_data_errors_named_as_typed(tmp_path, capsys, monkeypatch):
    """A 3-D mask, an all-negative capture: exit 1 like every bad file, one line, without a repeated prefix; a
    relative path is named as typed."""
    from test_cli_pipeline import one_line_error, run

    capture, mask = _capture_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    write_array(tmp_path / "mask3d.mat", np.ones((4, 96, 112), np.float32), key="mask")
    code, out, err = run(["calibrate", "cap.mat", "--mask", "mask3d.mat", "--bands", "8"], capsys)
    line = one_line_error(err)
    assert code == 1 and out == "" and "2-D coded aperture" in line and "calibration: calibration" not in line
    measurement, _ = _capture(20, 30, 2, "width")
    write_array(tmp_path / "neg.mat", measurement - measurement.max(), key="meas")
    code, out, err = run(["calibrate", "neg.mat", "--mask", "mask.mat", "--bands", "8"], capsys)
    assert code == 1 and out == "" and "negative values" in one_line_error(err)
    (tmp_path / "broken.mat").write_bytes(b"not a mat file")
    code, out, err = run(["calibrate", "broken.mat", "--mask", "mask.mat", "--bands", "8"], capsys)
    line = one_line_error(err)
    assert code == 1 and "broken.mat" in line and str(tmp_path) not in line


def test_a_fixed_true_step_reads_the_evidence_as_the_free_search_does():
    from hsra_cli.simulate import simulate_measurement

    rng = np.random.default_rng(0)
    mask = (rng.random((96, 96)) > 0.5).astype(np.float32)  # the capture area's size: nothing to search beyond it
    measurement, _ = simulate_measurement(rng.random((96, 96, 28)).astype(np.float32) * 0.5, mask)
    free, fixed = calibrate(measurement, mask), calibrate(measurement, mask, steps=2)
    assert (fixed.offset, fixed.step, fixed.confident) == (free.offset, free.step, True) == ((0, 0), 2, True)
    assert fixed.significance == pytest.approx(free.significance, rel=0.05) and fixed.significance > 8
