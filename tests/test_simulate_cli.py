"""`hsra simulate`: output names that collide, the noise options, stack selectors and shifted masks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hsra_cli.io import read_array, read_measurement, write_array, write_cube
from hsra_cli.physics import CassiOperator
from hsra_cli.simulate import generate_mask
from test_cli_pipeline import BANDS, one_line_error, run, smooth_cube

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cube(tmp_path):
    path = tmp_path / "scene.mat"
    write_cube(path, smooth_cube(16, 16))
    return path


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


# --- output names: a measurement never lands on mask.mat, nor on another measurement -------------------------


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
@pytest.mark.parametrize("name", ["mask", "Mask"])
def test_a_name_that_lands_on_mask_mat_is_refused_before_anything_is_written(cube, tmp_path, capsys, name, extra):
    code, out, err = run(["simulate", cube, "-o", tmp_path / "sim", "--name", name, *extra], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--name" in line and repr(name) in line and "mask.mat" in line and "--overwrite" not in line
    assert not (tmp_path / "sim").exists()


def test_a_cube_named_mask_is_refused_and_a_folder_from_an_earlier_run_is_left_as_it_was(cube, tmp_path, capsys):
    assert run(["simulate", cube, "-o", tmp_path / "sim", "-q"], capsys)[0] == 0
    before = files_in(tmp_path / "sim")
    named_mask = tmp_path / "cubes" / "mask.mat"
    named_mask.parent.mkdir()
    named_mask.write_bytes(cube.read_bytes())
    for extra in ([], ["--overwrite"]):
        code, out, err = run(["simulate", named_mask, "-o", tmp_path / "sim", *extra], capsys)
        assert code == 2 and out == ""
        line = one_line_error(err)
        assert "--name '{stem}'" in line and "mask.mat" in line
        assert files_in(tmp_path / "sim") == before


def test_inputs_whose_outputs_differ_only_in_case_are_refused_up_front(tmp_path, capsys):
    # Scene.mat and scene.mat are one file on a case-insensitive disk (macOS, Windows): one would replace the other
    for folder, stem in (("a", "Scene"), ("b", "scene")):
        (tmp_path / folder).mkdir()
        write_cube(tmp_path / folder / f"{stem}.mat", smooth_cube(16, 16))
    code, out, err = run(["simulate", tmp_path / "a" / "Scene.mat", tmp_path / "b" / "scene.mat", "-o",
                          tmp_path / "sim"], capsys)
    assert code == 2 and out == ""
    assert "would both write" in one_line_error(err) and "--name" in err
    assert not (tmp_path / "sim").exists()


def test_overlapping_scene_selectors_simulate_each_scene_once(tmp_path, capsys):
    np.save(tmp_path / "stack.npy", np.stack([smooth_cube(16, 16, seed=s) for s in range(3)]))
    code, out, err = run(["simulate", f"{tmp_path / 'stack.npy'}:0-1", f"{tmp_path / 'stack.npy'}:1", "-o",
                          tmp_path / "sim", "--no-previews"], capsys)
    assert code == 0, err
    assert sorted(Path(p).name for p in out.split()) == ["mask.mat", "stack_0.mat", "stack_1.mat"]


# --- noise options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0"])
def test_noise_sigma_must_be_a_finite_positive_number(cube, tmp_path, capsys, value):
    code, out, err = run(["simulate", cube, "-o", tmp_path / "sim", "--noise", "gaussian", "--noise-sigma", value],
                         capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--noise-sigma" in line and "finite" in line and "> 0" in line
    assert not (tmp_path / "sim").exists()


@pytest.mark.parametrize("args,named", [
    (["--noise", "shot", "--noise-sigma", "0.1"], ("--noise shot", "--noise-sigma")),
    (["--noise", "none", "--noise-sigma", "0.1"], ("--noise none", "--noise-sigma")),
    (["--noise", "gaussian", "--noise-sigma", "0.1", "--qe", "0.5"], ("--noise gaussian", "--qe")),
    (["--noise", "none", "--qe", "0.5"], ("--noise none", "--qe")),
    (["--noise", "gaussian", "--noise-sigma", "0.1", "--bit-depth", "4096"], ("--noise gaussian", "--bit-depth")),
    (["--noise", "none", "--gain", "1.2"], ("--noise none", "--gain")),
    (["--noise-sigma", "0.1", "--gain", "1.2"], ("--noise-sigma", "--gain")),
    (["--noise", "gaussian"], ("--noise gaussian", "--noise-sigma > 0")),
])
def test_noise_options_that_would_be_ignored_are_usage_errors_naming_both(cube, tmp_path, capsys, args, named):
    code, out, err = run(["simulate", cube, "-o", tmp_path / "sim", *args], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert all(option in line for option in named), line
    assert not (tmp_path / "sim").exists()


def test_an_option_of_one_noise_model_implies_that_model(cube, tmp_path, capsys):
    meas = {}
    for label, args in {
        "implied-gaussian": ["--noise-sigma", "0.05"],
        "gaussian": ["--noise", "gaussian", "--noise-sigma", "0.05"],
        "implied-shot": ["--qe", "0.5"],
        "shot": ["--noise", "shot", "--qe", "0.5"],
        "clean": [],
    }.items():
        code, _, err = run(["simulate", cube, "-o", tmp_path / label, "-q", "--no-previews", *args], capsys)
        assert code == 0, err
        meas[label], loaded = read_measurement(tmp_path / label / "scene.mat")
        meta = loaded.metadata
        if label.endswith("gaussian"):
            assert meta["noise"] == "gaussian" and meta["noise_sigma"] == 0.05 and meta.get("qe") is None
        elif label.endswith("shot"):
            assert meta["noise"] == "shot" and meta["qe"] == 0.5 and meta["bit_depth"] == 2048
            assert meta.get("noise_sigma") is None
        else:
            assert meta["noise"] == "none"
    np.testing.assert_array_equal(meas["implied-gaussian"], meas["gaussian"])
    np.testing.assert_array_equal(meas["implied-shot"], meas["shot"])
    assert not np.allclose(meas["clean"], meas["gaussian"]) and not np.allclose(meas["clean"], meas["shot"])


def test_an_infinite_gain_is_refused_and_overflowing_shot_settings_are_named(cube, tmp_path, capsys):
    # (with --noise shot an infinite gain used to make the photon draw run forever)
    code, out, err = run(["simulate", cube, "-o", tmp_path / "sim", "--gain", "inf"], capsys)
    assert code == 2 and out == "" and "--gain" in one_line_error(err)
    from hsra_cli.errors import UsageError
    from hsra_cli.simulate import resolve_noise

    with pytest.raises(UsageError, match="--gain"):
        resolve_noise("shot", gain=float("inf"))
    # a bit depth beyond a Python float used to end in an internal error (int too big to convert)
    code, _, err = run(["simulate", cube, "-o", tmp_path / "big", "-q", "--noise", "shot", "--bit-depth",
                        str(10 ** 20)], capsys)
    assert code == 0, err
    # photon counts beyond float32 used to make the draw run forever: in a subprocess, so that cannot hang the tests
    done = subprocess.run(
        [sys.executable, "-m", "hsra_cli", "simulate", str(cube), "-o", str(tmp_path / "sim"), "--noise", "shot",
         "--bit-depth", str(10 ** 40)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )
    line = one_line_error(done.stderr)
    assert done.returncode == 1 and done.stdout == "" and "internal error" not in line and "--bit-depth" in line
    assert not (tmp_path / "sim").exists()


def test_help_says_what_the_noise_options_default_to_and_imply(capsys):
    text = main_help(capsys)
    assert text.count("implies --noise shot") == 3 and "> 0; implies --noise gaussian" in text
    assert "(default 0.4)" in text and "(default 2048)" in text and "(default: previews)" in text


def main_help(capsys) -> str:
    code, out, _ = run(["simulate", "--help"], capsys)
    assert code == 0
    return " ".join(out.replace("│", " ").split())


# --- stack selectors ------------------------------------------------------------------------------------------


@pytest.fixture()
def stack(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, np.stack([smooth_cube(16, 16, seed=s) for s in range(2)]))
    return path


@pytest.mark.parametrize("selector,code_expected", [(":7", 2), (":1,7", 2)])
def test_a_single_selector_that_names_no_scene_is_one_error_line(stack, tmp_path, capsys, selector, code_expected):
    code, out, err = run(["simulate", f"{stack}{selector}", "-o", tmp_path / "sim"], capsys)
    assert code == code_expected and out == ""
    line = one_line_error(err)
    assert "scene 7" in line and "holds 2 scenes" in line and "failed" not in err
    assert not (tmp_path / "sim").exists()


@pytest.mark.parametrize("selector", [":x", ":a-b", ":1-", ":-2"])
def test_a_selector_that_does_not_parse_is_named_as_such_not_as_a_missing_file(stack, tmp_path, capsys, selector):
    code, out, err = run(["simulate", f"{stack}{selector}", "-o", tmp_path / "sim"], capsys)
    line = one_line_error(err)
    assert code == 2 and out == "" and "scene selector" in line and "does not exist" not in line, line
    assert not (tmp_path / "sim").exists()


def test_inputs_that_all_fail_before_anything_is_written_are_one_error_line_naming_each(stack, tmp_path, capsys):
    code, out, err = run(["simulate", f"{stack}:7", tmp_path / "missing.mat", "-o", tmp_path / "sim"], capsys)
    assert code == 1 and out == ""
    line = one_line_error(err)
    assert line.index("scene 7") < line.index("missing.mat")  # in the order given
    assert not (tmp_path / "sim").exists()
    # a run where some scenes are simulated keeps its batch summary
    code, out, err = run(["simulate", f"{stack}:7", f"{stack}:1", "-o", tmp_path / "sim", "--no-previews"], capsys)
    assert code == 1 and sorted(Path(p).name for p in out.split()) == ["mask.mat", "stack_1.mat"]
    assert "scene 7" in err and err.strip().splitlines()[-1] == "1 done, 0 skipped, 1 failed"


# --- shifted masks --------------------------------------------------------------------------------------------


def test_a_shifted_mask_for_another_band_count_says_both_counts_and_suggests_no_bands_value(tmp_path, capsys):
    aperture = generate_mask(16, 16, seed=1)
    phi = CassiOperator(aperture, bands=31).phi()[0].permute(1, 2, 0).numpy()  # H × W' × 31
    write_array(tmp_path / "mask31.mat", phi, key="mask")
    write_cube(tmp_path / "cube28.mat", smooth_cube(16, 16, bands=BANDS))
    code, out, err = run(["simulate", tmp_path / "cube28.mat", "--mask", tmp_path / "mask31.mat", "-o",
                          tmp_path / "sim"], capsys)
    assert code == 1 and out == ""
    line = one_line_error(err)
    assert "31 bands" in line and f"{BANDS} bands" in line and "--bands 31" not in line
    assert f"shifted mask for {BANDS} bands" in line
    assert not (tmp_path / "sim").exists()
    # the matching shifted mask simulates as the aperture it came from
    phi28 = CassiOperator(aperture, bands=BANDS).phi()[0].permute(1, 2, 0).numpy()
    write_array(tmp_path / "mask28.mat", phi28, key="mask")
    for mask, folder in ((tmp_path / "mask28.mat", "s28"), (None, "s2d")):
        args = ["--mask", mask] if mask is not None else ["--mask-kind", "random-binary", "--seed", "1"]
        assert run(["simulate", tmp_path / "cube28.mat", *args, "-o", tmp_path / folder, "-q"], capsys)[0] == 0
    np.testing.assert_allclose(read_measurement(tmp_path / "s28" / "cube28.mat")[0],
                               read_measurement(tmp_path / "s2d" / "cube28.mat")[0], atol=1e-5)
    assert read_array(tmp_path / "s28" / "mask.mat", "mask").data.shape == phi28.shape


# --- a window of a larger mask ---------------------------------------------------------------------------------


def test_mask_offset_simulates_through_a_window_of_a_larger_mask(cube, tmp_path, capsys):
    """--mask-offset: the measurement is that of the window (equal to simulating with the window as the mask),
    mask.mat holds the window, the measurement records where it lies, and a rerun with --skip-existing recognises
    the set."""
    large = generate_mask(40, 48, "random-grey", seed=5)
    write_array(tmp_path / "big.mat", large, key="mask")
    write_array(tmp_path / "window.mat", large[7:23, 20:36], key="mask")
    code, _, err = run(["simulate", cube, "--mask", tmp_path / "big.mat", "--mask-offset", "7,20", "-o",
                        tmp_path / "sim", "--no-previews"], capsys)
    assert code == 0, err
    code, _, err = run(["simulate", cube, "--mask", tmp_path / "window.mat", "-o", tmp_path / "ref", "--no-previews"],
                       capsys)
    assert code == 0, err
    measured, loaded = read_measurement(tmp_path / "sim" / "scene.mat")
    assert np.array_equal(measured, read_measurement(tmp_path / "ref" / "scene.mat")[0])
    assert loaded.metadata["mask_window"]["offset"] == [7, 20]
    assert loaded.metadata["mask_window"]["mask_shape"] == [40, 48]
    assert np.array_equal(read_array(tmp_path / "sim" / "mask.mat", "mask").data, large[7:23, 20:36])
    code, _, err = run(["simulate", cube, "--mask", tmp_path / "big.mat", "--mask-offset", "7,20", "-o",
                        tmp_path / "sim", "--no-previews", "--skip-existing"], capsys)
    assert code == 0 and "0 done, 1 skipped" in err, err
    # the folder reconstructs through the larger mask: its own mask.mat (the window) is skipped, not a failed capture
    code, out, err = run(["reconstruct", tmp_path / "sim", "--mask", tmp_path / "big.mat", "--mask-offset", "7,20",
                          "--model", "gap-tv", "-o", tmp_path / "rec", "--no-previews", "--threads", "1"], capsys)
    assert code == 0, err
    assert "skipping" in err and "mask.mat: it is the mask hsra simulate wrote" in err
    assert [Path(line).name for line in out.splitlines()] == ["scene.mat"]


@pytest.mark.parametrize("args, expected", [
    (["--mask-offset", "3,4"], "give --mask"),  # a generated mask has the cube's size
    (["--mask", "big.mat", "--mask-offset", "30,0"], "outside the 40×48 mask"),
    (["--mask", "big.mat", "--mask-offset", "3;4"], "row,column"),
    (["--mask", "big.mat"], "--mask-offset ROW,COL"),  # a larger mask without an offset says how to use it
])
def test_mask_offset_mistakes_are_one_line_each_and_write_nothing(cube, tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    write_array(tmp_path / "big.mat", generate_mask(40, 48, "random-grey", seed=5), key="mask")
    code, out, err = run(["simulate", cube, *args, "-o", tmp_path / "sim"], capsys)
    assert code in (1, 2) and out == "" and expected in one_line_error(err), err
    assert not (tmp_path / "sim").exists()


def test_skip_existing_refuses_a_measurement_simulated_with_other_settings(cube, tmp_path, capsys):
    assert run(["simulate", cube, "-o", tmp_path / "sim", "-q"], capsys)[0] == 0
    before = files_in(tmp_path / "sim")
    code, out, err = run(["simulate", cube, "-o", tmp_path / "sim", "--noise", "shot", "--skip-existing"], capsys)
    line = one_line_error(err)
    assert code == 2 and out == "" and "other settings (noise none, now shot)" in line and "--overwrite" in line
    assert files_in(tmp_path / "sim") == before
    code, _, err = run(["simulate", cube, "-o", tmp_path / "sim", "--skip-existing"], capsys)  # the same: skipped
    assert code == 0 and "0 done, 1 skipped" in err


def test_replacing_mask_mat_warns_about_measurements_left_from_the_old_mask(cube, tmp_path, capsys):
    assert run(["simulate", cube, "-o", tmp_path / "sim", "-q"], capsys)[0] == 0
    other = tmp_path / "other.mat"
    other.write_bytes(cube.read_bytes())
    code, _, err = run(["simulate", other, "-o", tmp_path / "sim", "--seed", "5", "--overwrite", "-q"], capsys)
    assert code == 0 and "warning:" in err and "simulated with the one it replaced (scene.mat)" in err, err


# --- contradictions and the mixed-size message -----------------------------------------------------------------


@pytest.mark.parametrize("options, words", [
    (["--mask", "MASK", "--mask-kind", "random-grey"], "--mask-kind random-grey"),
    (["--skip-existing", "--overwrite"], "--skip-existing and --overwrite contradict"),
])
def test_contradictory_options_are_refused_before_anything_is_written(cube, tmp_path, capsys, options, words):
    write_array(tmp_path / "mask.mat", generate_mask(16, 16, "random-binary"), key="mask")
    options = [str(tmp_path / "mask.mat") if o == "MASK" else o for o in options]
    code, out, err = run(["simulate", cube, "-o", tmp_path / "sim", *options], capsys)
    assert code == 2 and out == "" and words in one_line_error(err)
    assert not (tmp_path / "sim").exists()


def test_cubes_of_another_size_than_the_generated_mask_are_told_what_to_do(tmp_path, capsys):
    """No --mask: the mask is generated at the first cube's size; a cube of another size fails alone, with a remedy
    that fits (another folder, or a --mask with --mask-offset), not --mask-offset alone."""
    (tmp_path / "cubes").mkdir()
    write_cube(tmp_path / "cubes" / "a.mat", smooth_cube(16, 16))
    write_cube(tmp_path / "cubes" / "b.mat", smooth_cube(12, 12))
    code, out, err = run(["simulate", tmp_path / "cubes", "-o", tmp_path / "sim"], capsys)
    assert code == 1 and "Traceback" not in err
    failure = next(line for line in err.splitlines() if line.startswith("failed"))
    assert "b.mat" in failure and "generated" in failure and "another folder" in failure
    assert "give a --mask" in failure
    assert (tmp_path / "sim" / "a.mat").exists() and not (tmp_path / "sim" / "b.mat").exists()
