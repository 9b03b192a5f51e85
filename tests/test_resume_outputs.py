"""Resuming `hsra simulate`, `hsra render` and `hsra reconstruct` with --skip-existing (only this call's own results are
kept), `--overwrite` replacing whole sets, and quiet figures for non-Latin file names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hsra_cli.errors import Interrupted
from hsra_cli.io import write_cube
from test_cli_pipeline import one_line_error, run, smooth_cube

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture()
def cubes(tmp_path):
    """Three 16×16 cubes c0, c1, c2 in one folder."""
    folder = tmp_path / "cubes"
    folder.mkdir()
    for index in range(3):
        write_cube(folder / f"c{index}.mat", smooth_cube(16, 16, seed=index))
    return folder


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def summary_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def interrupt_when(module, name: str, on: str, monkeypatch) -> None:
    """Make ``module.name`` (a writer) raise SIGTERM's Interrupted when asked to write a path ending in ``on``."""
    original = getattr(module, name)

    def writer(path, *args, **kwargs):
        if str(path).endswith(on):
            raise Interrupted(signal.SIGTERM)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(module, name, writer)


# --- hsra simulate ---------------------------------------------------------------------------------------------


def test_simulate_resumes_a_batch_with_skip_existing(cubes, tmp_path, capsys):
    sim = tmp_path / "sim"
    assert run(["simulate", cubes / "c0.mat", "-o", sim, "-q", "--threads", "1"], capsys)[0] == 0
    first = files_in(sim)
    assert set(first) == {"c0.mat", "c0_meas.png", "mask.mat"}
    # without the flag: refused, naming both ways out, and nothing written
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "c0.mat exists" in line and "--overwrite" in line and "--skip-existing" in line
    assert files_in(sim) == first
    # with it: c0 is skipped (its files untouched), c1 and c2 are simulated
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1", "--skip-existing"], capsys)
    assert code == 0, err
    assert summary_line(err) == "2 done, 1 skipped, 0 failed"
    assert sorted(Path(p).name for p in out.split()) == ["c1.mat", "c1_meas.png", "c2.mat", "c2_meas.png"]
    now = files_in(sim)
    assert {name: now[name] for name in first} == first
    assert set(now) == {"mask.mat", *(f"c{i}{s}" for i in range(3) for s in (".mat", "_meas.png"))}
    # all done: every input skipped, nothing rewritten
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1", "--skip-existing"], capsys)
    assert code == 0 and out == "" and summary_line(err) == "0 done, 3 skipped, 0 failed"
    assert files_in(sim) == now


def test_simulate_redoes_the_set_an_interruption_left_incomplete(cubes, tmp_path, capsys, monkeypatch):
    import hsra_cli.render as render

    sim = tmp_path / "sim"
    interrupt_when(render, "save_png", "c1_meas.png", monkeypatch)
    code, _, err = run(["simulate", cubes, "-o", sim, "--threads", "1"], capsys)
    assert code == 143 and summary_line(err).startswith("interrupted by SIGTERM: 1 done")
    monkeypatch.undo()
    assert set(files_in(sim)) == {"mask.mat", "c0.mat", "c0_meas.png", "c1.mat"}  # c1's set lacks its preview
    before = files_in(sim)
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1"], capsys)
    assert code == 2 and "--skip-existing" in one_line_error(err)
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1", "--skip-existing"], capsys)
    assert code == 0, err
    assert summary_line(err) == "2 done, 1 skipped, 0 failed"
    assert sorted(Path(p).name for p in out.split()) == ["c1.mat", "c1_meas.png", "c2.mat", "c2_meas.png"]
    after = files_in(sim)
    assert after["c0.mat"] == before["c0.mat"] and after["c0_meas.png"] == before["c0_meas.png"]
    assert "c1_meas.png" in after and "c2_meas.png" in after


@pytest.mark.parametrize("foreign", ["c1.mat", "c1_meas.png"])
def test_simulate_skip_existing_never_replaces_a_file_hsra_did_not_write(cubes, tmp_path, capsys, foreign):
    sim = tmp_path / "sim"
    assert run(["simulate", cubes / "c0.mat", "-o", sim, "-q", "--threads", "1"], capsys)[0] == 0
    if foreign.endswith(".mat"):
        write_cube(sim / foreign, smooth_cube(16, 16, seed=9))  # the user's own file under a measurement's name
    else:
        import imageio.v3 as iio

        iio.imwrite(sim / foreign, np.zeros((8, 8, 3), np.uint8), extension=".png")
    before = files_in(sim)
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1", "--skip-existing"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert foreign in line and "not written by hsra" in line and "--overwrite" in line
    assert files_in(sim) == before  # refused up front: nothing replaced, nothing added


def test_simulate_skip_existing_does_not_keep_sets_made_with_another_mask(cubes, tmp_path, capsys):
    sim = tmp_path / "sim"
    assert run(["simulate", cubes, "-o", sim, "-q", "--threads", "1"], capsys)[0] == 0
    before = files_in(sim)
    code, out, err = run(["simulate", cubes, "-o", sim, "--threads", "1", "--skip-existing", "--seed", "1"], capsys)
    assert code == 2 and out == ""
    assert "mask.mat" in one_line_error(err) and "different mask" in err
    assert files_in(sim) == before


# --- hsra render -----------------------------------------------------------------------------------------------


def test_render_resumes_a_batch_with_skip_existing(cubes, tmp_path, capsys):
    out_dir = tmp_path / "previews"
    assert run(["render", cubes / "c0.mat", "-o", out_dir, "-q"], capsys)[0] == 0
    first = files_in(out_dir)
    assert set(first) == {"c0_rgb.png", "c0_bands.png"}
    code, out, err = run(["render", cubes, "-o", out_dir, "-q"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "c0_rgb.png exists" in line and "--overwrite" in line and "--skip-existing" in line
    assert files_in(out_dir) == first
    code, out, err = run(["render", cubes, "-o", out_dir, "-q", "--skip-existing"], capsys)
    assert code == 0, err
    assert summary_line(err) == "2 done, 1 skipped, 0 failed"
    assert sorted(Path(p).name for p in out.split()) == ["c1_bands.png", "c1_rgb.png", "c2_bands.png", "c2_rgb.png"]
    now = files_in(out_dir)
    assert {name: now[name] for name in first} == first
    code, out, err = run(["render", cubes, "-o", out_dir, "-q", "--skip-existing"], capsys)
    assert code == 0 and out == "" and summary_line(err) == "0 done, 3 skipped, 0 failed"
    assert files_in(out_dir) == now


def test_render_redoes_the_set_an_interruption_left_incomplete(cubes, tmp_path, capsys, monkeypatch):
    import hsra_cli.render as render

    out_dir = tmp_path / "previews"
    interrupt_when(render, "save_figure", "c1_bands.png", monkeypatch)
    code, _, err = run(["render", cubes, "-o", out_dir, "-q"], capsys)
    assert code == 143, err
    monkeypatch.undo()
    assert set(files_in(out_dir)) == {"c0_rgb.png", "c0_bands.png", "c1_rgb.png"}
    before = files_in(out_dir)
    code, out, err = run(["render", cubes, "-o", out_dir, "-q"], capsys)
    assert code == 2 and "--skip-existing" in one_line_error(err)
    code, out, err = run(["render", cubes, "-o", out_dir, "-q", "--skip-existing"], capsys)
    assert code == 0, err
    assert summary_line(err) == "2 done, 1 skipped, 0 failed"
    assert sorted(Path(p).name for p in out.split()) == ["c1_bands.png", "c1_rgb.png", "c2_bands.png", "c2_rgb.png"]
    after = files_in(out_dir)
    assert after["c0_rgb.png"] == before["c0_rgb.png"] and after["c0_bands.png"] == before["c0_bands.png"]


def test_render_skip_existing_never_replaces_a_file_hsra_did_not_write(cubes, tmp_path, capsys):
    import imageio.v3 as iio

    out_dir = tmp_path / "previews"
    out_dir.mkdir()
    iio.imwrite(out_dir / "c1_rgb.png", np.zeros((8, 8, 3), np.uint8), extension=".png")  # the user's own image
    before = files_in(out_dir)
    code, out, err = run(["render", cubes, "-o", out_dir, "-q", "--skip-existing"], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "c1_rgb.png" in line and "not written by hsra" in line and "--overwrite" in line
    assert files_in(out_dir) == before
    # a whole set of the user's is kept too: skipped, never rewritten
    iio.imwrite(out_dir / "c1_bands.png", np.zeros((8, 8, 3), np.uint8), extension=".png")
    before = files_in(out_dir)
    code, out, err = run(["render", cubes, "-o", out_dir, "-q", "--skip-existing"], capsys)
    assert code == 0, err
    assert summary_line(err) == "2 done, 1 skipped, 0 failed"
    after = files_in(out_dir)
    assert {name: after[name] for name in before} == before


# --- figures of files with names the font cannot draw -----------------------------------------------------------


# --- hsra reconstruct: what --skip-existing keeps and what --overwrite replaces ----------------------------------


@pytest.fixture()
def sim(cubes, tmp_path, capsys):
    """Captures c0, c1, c2 of three different scenes and their mask.mat, as `hsra simulate` writes them."""
    folder = tmp_path / "sim"
    assert run(["simulate", cubes, "-o", folder, "-q", "--threads", "1"], capsys)[0] == 0
    return folder


def reconstruct(inputs, mask, out, *extra):
    """`hsra reconstruct` with gap-tv, quick and quiet about previews unless ``extra`` asks for them."""
    args = ["reconstruct", *([inputs] if not isinstance(inputs, list) else inputs), "--mask", mask, "-o", out,
            "--model", "gap-tv", "--threads", "1", *extra]
    return args if "--previews" in extra else [*args, "--no-previews"]


def record_of(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_skip_existing_never_keeps_a_set_made_from_another_capture(sim, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    assert run(reconstruct(sim / "c0.mat", sim / "mask.mat", out), capsys)[0] == 0
    before = files_in(out)
    # the same capture under another path and name is the same capture: skipped
    day1 = tmp_path / "copy"
    day1.mkdir()
    shutil.copy(sim / "c0.mat", day1 / "c0.mat")
    code, _, err = run(reconstruct(day1 / "c0.mat", sim / "mask.mat", out, "--skip-existing"), capsys)
    assert code == 0 and summary_line(err) == "0 done, 1 skipped, 0 failed"
    # day 2: another capture under day 1's name is refused, naming the set and the ways out; nothing replaced
    day2 = tmp_path / "day2"
    day2.mkdir()
    shutil.copy(sim / "c1.mat", day2 / "c0.mat")
    code, out_text, err = run(reconstruct(day2 / "c0.mat", sim / "mask.mat", out, "--skip-existing"), capsys)
    line = one_line_error(err)
    assert code == 2 and out_text == ""
    assert str(out / "c0") in line and "another capture" in line and "--overwrite" in line and "-o" in line
    assert files_in(out) == before
    # in a batch that input fails alone, named; the others are done and the run exits 1
    shutil.copy(sim / "c2.mat", day2 / "c2.mat")
    code, out_text, err = run(reconstruct(day2, sim / "mask.mat", out, "--skip-existing"), capsys)
    assert code == 1 and summary_line(err) == "1 done, 0 skipped, 1 failed"
    assert [Path(p).name for p in out_text.split()] == ["c2.mat"]
    assert any(line.startswith("failed") and "c0.mat" in line and "another capture" in line
               for line in err.splitlines())
    assert {name: files_in(out)[name] for name in before} == before
    # with --overwrite it is redone from day 2's capture
    code, _, err = run(reconstruct(day2 / "c0.mat", sim / "mask.mat", out, "--overwrite"), capsys)
    assert code == 0, err
    assert record_of(out / "c0.json")["input"]["path"] == str((day2 / "c0.mat").resolve())


def test_skip_existing_never_keeps_a_set_made_with_another_mask_or_other_settings(sim, tmp_path, capsys):
    import scipy.io

    out = tmp_path / "out"
    assert run(reconstruct(sim / "c0.mat", sim / "mask.mat", out), capsys)[0] == 0
    before = files_in(out)
    other_mask = tmp_path / "other_mask.mat"
    scipy.io.savemat(other_mask, {"mask": np.flipud(scipy.io.loadmat(sim / "mask.mat")["mask"])})
    code, _, err = run(reconstruct(sim / "c0.mat", other_mask, out, "--skip-existing"), capsys)
    assert code == 2 and "another mask" in one_line_error(err) and "--overwrite" in err
    code, _, err = run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--skip-existing", "--normalize", "max"),
                       capsys)
    assert code == 2 and "other settings (normalize auto, not max)" in one_line_error(err)
    assert files_in(out) == before
    # how it is computed is not what it is: other tiling options still resume
    code, _, err = run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--skip-existing", "--memory-cap", "2"),
                       capsys)
    assert code == 0 and summary_line(err) == "0 done, 1 skipped, 0 failed"


def test_skip_existing_never_replaces_a_set_made_in_another_format(sim, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(reconstruct(sim / "c0.mat", sim / "mask.mat", out), capsys)[0] == 0
    before = files_in(out)
    for flags in (["--skip-existing"], []):
        code, _, err = run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--format", "h5", *flags), capsys)
        line = one_line_error(err)
        assert code == 2 and "c0.mat" in line and "--format" in line and "--overwrite" in line
        assert files_in(out) == before  # the record still describes c0.mat, which keeps its provenance
    # --overwrite replaces the whole set: the old cube goes with its record
    code, _, err = run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--format", "h5", "--overwrite"), capsys)
    assert code == 0, err
    assert set(files_in(out)) == {"c0.h5", "c0.json"}
    assert Path(record_of(out / "c0.json")["outputs"]["cube"]).name == "c0.h5"


def test_skip_existing_keeps_a_set_made_without_previews(sim, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(reconstruct(sim, sim / "mask.mat", out), capsys)[0] == 0
    before = files_in(out)
    code, out_text, err = run(reconstruct(sim, sim / "mask.mat", out, "--skip-existing", "--previews"), capsys)
    assert code == 0 and out_text == "" and summary_line(err) == "0 done, 3 skipped, 0 failed"
    assert "made with --no-previews" in err
    assert files_in(out) == before  # nothing recomputed, nothing replaced


def test_overwrite_replaces_the_whole_set_and_nothing_else(sim, tmp_path, capsys):
    import imageio.v3 as iio

    out = tmp_path / "out"
    assert run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--previews"), capsys)[0] == 0
    assert {"c0_rgb.png", "c0_bands.png", "c0_residual.png"} <= set(files_in(out))
    (out / "c0_notes.txt").write_text("mine")
    iio.imwrite(out / "c0_rgb_mine.png", np.zeros((8, 8, 3), np.uint8), extension=".png")
    code, _, err = run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--overwrite"), capsys)
    assert code == 0, err
    assert set(files_in(out)) == {"c0.mat", "c0.json", "c0_notes.txt", "c0_rgb_mine.png"}
    # a preview-named image hsra did not write is the user's: kept
    iio.imwrite(out / "c0_rgb.png", np.zeros((8, 8, 3), np.uint8), extension=".png")
    mine = (out / "c0_rgb.png").read_bytes()
    code, _, err = run(reconstruct(sim / "c0.mat", sim / "mask.mat", out, "--overwrite"), capsys)
    assert code == 0, err
    assert (out / "c0_rgb.png").read_bytes() == mine


def test_titles_with_glyphs_the_font_lacks_print_no_warnings(tmp_path):
    cube = tmp_path / "ünïcode_场景.mat"
    write_cube(cube, smooth_cube(16, 16))
    sim = tmp_path / "sim"
    commands = [
        ["render", str(cube), "-o", str(tmp_path / "previews"), "--pixel", "3,3", "--truth", str(cube)],
        ["render", str(cube), "-o", str(tmp_path / "vectors"), "--figure-format", "pdf"],
        ["simulate", str(cube), "-o", str(sim), "--threads", "1"],
        ["reconstruct", str(sim / "ünïcode_场景.mat"), "--mask", str(sim / "mask.mat"), "--model", "gap-tv",
         "-o", str(tmp_path / "out"), "--threads", "1"],
    ]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "hsra_cli", *command], capture_output=True, text=True,
                              timeout=300, env=ENV)
        assert done.returncode == 0, done.stderr
        assert "Glyph" not in done.stderr and "Warning" not in done.stderr, done.stderr
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"ünïcode_场景_bands.png", "ünïcode_场景_residual.png"} <= names  # the figures are still written
    assert {p.name for p in (tmp_path / "vectors").iterdir()} == {"ünïcode_场景_rgb.png", "ünïcode_场景_bands.pdf"}


@pytest.mark.parametrize("command", ["simulate", "reconstruct", "render"])
def test_skip_existing_with_overwrite_is_refused_by_every_command_that_writes_sets(command, cubes, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ["--mask", cubes / "c0.mat"] if command == "reconstruct" else []
    code, stdout, err = run([command, cubes / "c0.mat", *extra, "-o", out, "--skip-existing", "--overwrite"], capsys)
    assert code == 2 and stdout == "" and not out.exists()
    assert "--skip-existing and --overwrite contradict each other" in one_line_error(err)
