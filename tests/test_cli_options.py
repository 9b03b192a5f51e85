"""Options: wrong values are usage errors listing what is allowed, --help shows choices and flags as they are, one
vocabulary across commands with the old spellings still working, and damaged data gets one line (issue 10, items
8 and 12)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from hsra_cli.cli import main
from hsra_cli.io import write_cube

from test_cli_pipeline import one_line_error, run, smooth_cube

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def wide_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # help rows unfolded, so each option reads on one line


@pytest.fixture()
def simulated(tmp_path, capsys):
    write_cube(tmp_path / "scene.mat", smooth_cube(16, 16))
    assert run(["simulate", tmp_path / "scene.mat", "-o", tmp_path / "sim", "-q"], capsys)[0] == 0
    return tmp_path / "sim" / "scene.mat", tmp_path / "sim" / "mask.mat"


def help_text(command: str, capsys) -> str:
    assert main([command, "--help"]) == 0
    # Wide and plain, so option names are never folded or coloured.
    return re.sub(r"\s+", " ", capsys.readouterr().out)


@pytest.mark.parametrize("option,value,allowed", [
    ("--step", "0", "greater than or equal to 1"),
    ("--axis", "diagonal", "'width', 'height'"),
    ("--memory-cap", "-1", "> 0"),
    ("--memory-cap", "inf", "finite number > 0"),
    ("--format", "xls", "'mat', 'h5', 'tif', 'npy'"),
    ("--normalize", "bright", "'auto', 'none', 'max'"),
    ("--tile-overlap", "1.5", "[0, 1)"),
    ("--bands", "0", "greater than or equal to 1"),
    ("--part-id", "-1", "greater than or equal to 0"),
])
def test_invalid_reconstruct_values_are_usage_errors_naming_what_is_allowed(simulated, tmp_path, capsys, option, value,
                                                                           allowed):
    meas, mask = simulated
    code, _, err = run(["reconstruct", meas, "--mask", mask, "-o", tmp_path / "rec", option, value], capsys)
    assert code == 2
    line = one_line_error(err)
    assert option in line and allowed in line and "internal error" not in line
    assert not (tmp_path / "rec").exists()


@pytest.mark.parametrize("option,value,allowed", [
    ("--noise", "poisson", "'none', 'gaussian', 'shot'"),
    ("--mask-kind", "checker", "'random-binary', 'random-grey'"),
    ("--axis", "diagonal", "'width', 'height'"),
    ("--step", "0", "greater than or equal to 1"),
    ("--qe", "0", "> 0"),
    ("--gain", "-2", "> 0"),
])
def test_invalid_simulate_values_are_usage_errors_naming_what_is_allowed(tmp_path, capsys, option, value, allowed):
    write_cube(tmp_path / "scene.mat", smooth_cube(16, 16))
    code, _, err = run(["simulate", tmp_path / "scene.mat", "-o", tmp_path / "sim", option, value], capsys)
    assert code == 2
    line = one_line_error(err)
    assert option in line and allowed in line
    assert not (tmp_path / "sim").exists()


def test_help_lists_every_choice_and_shows_flags_as_flags(capsys):
    reconstruct = help_text("reconstruct", capsys)
    for choices in ("mat|h5|tif|npy", "auto|none|max", "width|height"):
        assert choices in reconstruct
    simulate = help_text("simulate", capsys)
    for choices in ("random-binary|random-grey", "none|gaussian|shot", "width|height"):
        assert choices in simulate
    assert "field|float" in help_text("evaluate", capsys)
    for command in ("reconstruct", "simulate", "evaluate", "render"):
        assert "<bool>" not in help_text(command, capsys), f"hsra {command} --help shows a flag as taking a value"


def test_choice_enums_hold_the_library_values():
    from hsra_cli.cli import _common
    from hsra_cli.physics import _AXES
    from hsra_cli.reconstruct import NORMALIZE_MODES
    from hsra_cli.simulate import MASK_KINDS, NOISE_KINDS

    assert tuple(c.value for c in _common.NormalizeChoice) == NORMALIZE_MODES
    assert tuple(c.value for c in _common.MaskKindChoice) == MASK_KINDS
    assert tuple(c.value for c in _common.NoiseChoice) == NOISE_KINDS
    assert set(c.value for c in _common.AxisChoice) == set(_AXES)


def test_damaged_tiff_and_overflowing_float64_give_one_line_and_nothing_else(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "good.tif", np.random.default_rng(0).random((4, 8, 8)).astype(np.float32),
                     photometric="minisblack")
    raw = (tmp_path / "good.tif").read_bytes()
    (tmp_path / "damaged.tif").write_bytes(raw[:200] + b"\xff" * 40 + raw[240:])
    np.save(tmp_path / "huge_values.npy", np.array([[1e300, 2.0], [3.0, 4.0]]))
    for name, fragment in [("damaged.tif", "damaged.tif"), ("huge_values.npy", "beyond the float32 range")]:
        result = subprocess.run(
            [sys.executable, "-m", "hsra_cli", "evaluate", name, "--truth", name],
            capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("hsra: error: "), result.stderr
        assert fragment in result.stderr and "NaN/Inf" not in result.stderr


def test_out_of_memory_names_the_input(simulated, tmp_path, capsys, monkeypatch):
    from hsra_cli.reconstruct import Reconstructor

    def exhausted(self, measurement, *args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(Reconstructor, "reconstruct", exhausted)
    meas, mask = simulated
    code, _, err = run(["reconstruct", meas, "--mask", mask, "-o", tmp_path / "rec"], capsys)
    assert code == 1
    line = one_line_error(err)
    assert "out of memory" in line and str(meas) in line and "--tile-size" in line


# --- 12. one vocabulary ---------------------------------------------------------------------------------------


def test_dash_o_is_the_output_folder_of_every_command_and_evaluate_writes_files_with_output_file(capsys):
    for command in ("reconstruct", "simulate", "render", "train"):
        assert "-o --out" in help_text(command, capsys).replace("--out -o", "-o --out") or "--out -o" in help_text(
            command, capsys), command
    evaluate = help_text("evaluate", capsys)
    assert "--output-file" in evaluate and "--out " not in evaluate and "--output " not in evaluate
    assert "--output-dir" not in help_text("render", capsys)


def test_old_spellings_still_work_as_hidden_aliases(tmp_path, capsys):
    cube = tmp_path / "scene.npy"
    np.save(cube, smooth_cube(16, 16))
    # render --output-dir (now -o/--out), --point x,y (now --pixel row,col)
    code, out, err = run(["render", cube, "--output-dir", tmp_path / "old", "--point", "3,7", "-q"], capsys)
    assert code == 0, err
    code, out_new, err = run(["render", cube, "--out", tmp_path / "new", "--pixel", "7,3", "-q"], capsys)
    assert code == 0, err
    assert (tmp_path / "old" / "scene_spectra.png").read_bytes() == (tmp_path / "new" / "scene_spectra.png").read_bytes()
    # simulate --no-preview (now --no-previews, as reconstruct spells it)
    write_cube(tmp_path / "cube.mat", smooth_cube(16, 16))
    code, out, _ = run(["simulate", tmp_path / "cube.mat", "-o", tmp_path / "sim", "--no-preview"], capsys)
    assert code == 0 and {Path(p).name for p in out.split()} == {"mask.mat", "cube.mat"}
    code, out, _ = run(["simulate", tmp_path / "cube.mat", "-o", tmp_path / "sim2", "--no-previews"], capsys)
    assert code == 0 and {Path(p).name for p in out.split()} == {"mask.mat", "cube.mat"}
    assert "--previews" in help_text("simulate", capsys) and "--preview " not in help_text("simulate", capsys)
    # evaluate -o FILE (now --output-file)
    code, _, _ = run(["evaluate", cube, "--truth", cube, "-o", tmp_path / "m.json"], capsys)
    assert code == 0 and (tmp_path / "m.json").exists()
    # ... and --out, as every other command spells -o (it used to be refused with a hint at the hidden --output)
    code, _, err = run(["evaluate", cube, "--truth", cube, "--out", tmp_path / "m.csv"], capsys)
    assert code == 0 and (tmp_path / "m.csv").read_text().startswith("name,"), err


def test_every_coordinate_option_reads_row_then_column(capsys):
    for command, option in (("reconstruct", "--mask-offset"), ("render", "--pixel"), ("train", "--mask-offset")):
        text = help_text(command, capsys)
        row = re.search(r"│ (?:\* )?" + re.escape(option) + r" [^│]*", text).group(0)  # its row of the help table
        assert "ROW,COL" in row.upper().replace("ROW, COL", "ROW,COL") and "X,Y" not in row.upper(), (command, row)


def test_every_command_that_runs_torch_takes_threads_with_one_meaning(capsys, monkeypatch):
    """--threads is on each command whose work runs in torch, spelled and explained alike, and 0 is refused."""
    from hsra_cli.cli._common import THREADS_HELP

    for command in ("reconstruct", "simulate", "calibrate", "train"):
        assert re.search(r"--threads <int( range)?>( \[x>=1\])? " + re.escape(THREADS_HELP), help_text(command, capsys)), command
        code = main([command, "--threads", "0"])
        err = capsys.readouterr().err
        assert code == 2 and "--threads" in one_line_error(err), command


def test_simulate_and_calibrate_run_on_the_threads_asked_for(tmp_path, capsys, monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: asked.append(n))
    write_cube(tmp_path / "scene.mat", smooth_cube(32, 32))
    code, _, _ = run(["simulate", tmp_path / "scene.mat", "-o", tmp_path / "sim", "-q", "--threads", "1"], capsys)
    assert code == 0 and asked == [1]
    with warnings.catch_warnings():
        # A window narrower than the bands' spread (32 < 27·2) once gave numpy's empty-slice warnings.
        warnings.simplefilter("error")
        code, out, err = run(["calibrate", tmp_path / "sim" / "scene.mat", "--mask", tmp_path / "sim" / "mask.mat",
                              "--step", "2", "--axis", "width", "-q", "--threads", "1"], capsys)
    assert code == 0 and asked == [1, 1], err
    assert "--mask-offset 0,0" in out
    code, _, err = run(["calibrate", tmp_path / "sim" / "scene.mat", "--mask", tmp_path / "sim" / "mask.mat",
                        "--axis", "diagonal"], capsys)
    assert code == 2 and "'width', 'height'" in one_line_error(err)
