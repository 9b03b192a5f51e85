"""Batches on many captures: nothing the user had is lost, one bad input never stops the others, interrupted and
crashed runs clean up after themselves, and the data's physics gets a clear word (issue 10, items 1–7, 9, 11)."""

from __future__ import annotations

import errno
import io as stdio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from hsra_cli.batch import output_paths, set_complete
from hsra_cli.cli import main
from hsra_cli.io import read_cube, read_measurement, write_array, write_cube

from test_cli_pipeline import one_line_error, run, smooth_cube

BANDS = 28
ROOT = Path(__file__).resolve().parents[1]


def _simulated(folder: Path, size: int, names) -> Path:
    """Captures ``<name>.mat`` of a smooth scene and their ``mask.mat`` in ``folder``, as `hsra simulate` writes them."""
    from hsra_cli.simulate import generate_mask, simulate_measurement

    folder.mkdir()
    mask = generate_mask(size, size, seed=0)
    measurement, _ = simulate_measurement(smooth_cube(size, size), mask)
    for name in names:
        write_array(folder / f"{name}.mat", measurement, key="meas")
    write_array(folder / "mask.mat", mask, key="mask")
    return folder


@pytest.fixture()
def captures(tmp_path):
    """A folder as `hsra simulate` leaves it: three captures a, b, c and their mask.mat."""
    return _simulated(tmp_path / "caps", 24, "abc")


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- 1. an output never replaces an input -------------------------------------------------------------------


def test_reconstructing_a_folder_into_itself_is_refused_before_any_work_even_with_overwrite(captures, capsys):
    before = {p.name: p.read_bytes() for p in captures.iterdir()}
    code, out, err = run(["reconstruct", captures, "--mask", captures / "mask.mat", "-o", captures, "--overwrite"], capsys)
    assert code == 2
    line = one_line_error(err)
    assert "would replace the input" in line and "a.mat" in line
    assert out == ""
    assert {p.name: p.read_bytes() for p in captures.iterdir()} == before  # nothing written, nothing replaced


def test_a_name_template_that_keeps_outputs_apart_may_write_beside_the_inputs(captures, capsys):
    code, out, err = run(["reconstruct", captures, "--mask", captures / "mask.mat", "-o", captures, "--name",
                          "{stem}_{model}", "--no-previews", "-q", "--model", "gap-tv"], capsys)
    assert code == 0, err
    assert {Path(p).name for p in out.split()} == {"a_gap-tv.mat", "b_gap-tv.mat", "c_gap-tv.mat"}


def test_a_link_in_a_folder_is_an_input_of_its_own_name_and_one_file_named_twice_is_done_once(captures, tmp_path, capsys):
    (captures / "d.mat").symlink_to("a.mat")  # a lab's folder of links to its captures
    code, out, err = run(["reconstruct", captures, captures / "a.mat", f"{captures}/./b.mat", "--mask",
                          captures / "mask.mat", "-o", tmp_path / "out", "--no-previews", "-q", "--model", "gap-tv"],
                         capsys)
    assert code == 0, err
    assert sorted(Path(p).name for p in out.split()) == ["a.mat", "b.mat", "c.mat", "d.mat"]
    assert json.loads((tmp_path / "out" / "d.json").read_text())["input"]["path"].endswith("d.mat")


def test_simulating_into_the_cubes_folder_never_replaces_a_cube(tmp_path, capsys):
    cube_path = tmp_path / "scene.mat"
    write_cube(cube_path, smooth_cube(16, 16))
    before = cube_path.read_bytes()
    code, _, err = run(["simulate", cube_path, "-o", tmp_path, "--overwrite"], capsys)
    assert code == 2 and "would replace the input" in one_line_error(err)
    assert cube_path.read_bytes() == before and listing(tmp_path) == ["scene.mat"]


def test_evaluate_never_writes_its_report_over_an_input(tmp_path, capsys):
    cube = tmp_path / "scene.npy"
    np.save(cube, smooth_cube(16, 16))
    before = cube.read_bytes()
    code, _, err = run(["evaluate", cube, "--truth", cube, "--json", "--output-file", cube, "--overwrite"], capsys)
    assert code == 2 and "would replace the input" in one_line_error(err)
    assert cube.read_bytes() == before


# --- 2. interrupted runs -----------------------------------------------------------------------------------


@pytest.fixture()
def slow_captures(tmp_path):
    """Six 64×64 captures: GAP-TV takes a fraction of a second on each, long enough to be interrupted."""
    folder = _simulated(tmp_path / "caps", 64, [f"c{index}" for index in range(6)])
    mask = tmp_path / "mask.mat"
    (folder / "mask.mat").rename(mask)
    return folder, mask


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_batch_cleanly_with_what_is_done_and_what_is_left(slow_captures, tmp_path, signum, code):
    folder, mask = slow_captures
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "hsra_cli", "reconstruct", str(folder), "--mask", str(mask), "-o", str(out),
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    while not (out / "c0.json").exists():  # the first set is complete: the batch is under way
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith(f"interrupted by {signal.Signals(signum).name}: ")
    done, left = int(summary.split(": ")[1].split()[0]), int(summary.split(", ")[-1].split()[0])
    assert done >= 1 and left >= 1 and done + left == 6
    # Every cube written has its whole set; no temporary file is left behind.
    names = listing(out)
    assert not [n for n in names if n.startswith(".")]
    cubes = [n for n in names if n.endswith(".mat")]
    assert len(cubes) == done and all(f"{Path(n).stem}.json" in names for n in cubes)
    assert sorted(Path(p).name for p in stdout.split()) == sorted(cubes)


def test_a_signal_during_any_other_command_exits_128_plus_its_number_with_one_line(tmp_path, capsys, monkeypatch):
    import hsra_cli.metrics as metrics
    from hsra_cli.errors import Interrupted

    def terminated(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)  # what the CLI's handler raises when SIGTERM arrives

    monkeypatch.setattr(metrics, "evaluate_cube", terminated)
    np.save(tmp_path / "scene.npy", smooth_cube(16, 16))
    code, out, err = run(["evaluate", tmp_path / "scene.npy", "--truth", tmp_path / "scene.npy"], capsys)
    assert code == 143 and out == ""
    assert one_line_error(err) == "hsra: error: interrupted by SIGTERM"


def _hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding the write lock of ``path``, as a live hsra writer does."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.skipif(sys.platform == "win32", reason="file locks are POSIX here")
def test_temporaries_of_a_killed_run_are_removed_by_the_next_run_and_nothing_else_is(captures, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 3600
    stale = out / ".a.mat.0123456789ab.tmp"  # what a SIGKILLed run leaves: our name pattern, unlocked, old
    stale.write_bytes(b"x" * 5000)
    live = out / ".b.mat.abcdef012345.tmp"  # another run writing right now (e.g. --part-id 1): locked
    live.write_bytes(b"y" * 10)
    recent = out / ".c.png.00000000ffff.tmp"  # unlocked but just written: maybe a writer that has not locked yet
    recent.write_bytes(b"z")
    not_ours = [out / ".notes.txt.0123456789ab.tmp", out / ".a.mat.backup.tmp", out / "a.mat.0123456789ab.tmp",
                out / "keep.tmp"]
    for path in not_ours:
        path.write_text("user data")
    for path in [stale, live, *not_ours]:
        os.utime(path, (old, old))
    holder = _hold_lock(live)
    try:
        code, _, err = run(["reconstruct", captures / "a.mat", captures / "b.mat", "--mask", captures / "mask.mat",
                            "-o", out, "--no-previews"], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 0, err
    assert not stale.exists()
    assert live.exists() and recent.exists() and all(path.read_text() == "user data" for path in not_ours)
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert any("removed 1 temporary file(s) (5.0 kB)" in line for line in notes)
    assert any("left 1 temporary file(s)" in line for line in notes)


@pytest.mark.skipif(sys.platform == "win32", reason="file locks are POSIX here")
def test_evaluate_output_file_removes_what_a_killed_evaluate_left(tmp_path, capsys):
    out = tmp_path / "metrics"
    out.mkdir()
    stale = out / ".m.csv.0123456789ab.tmp"  # a SIGKILLed `evaluate --output-file m.csv`
    stale.write_text("scene,psnr\n")
    mine = out / "notes.csv"
    mine.write_text("user data")
    old = time.time() - 3600
    for path in (stale, mine):
        os.utime(path, (old, old))
    rng = np.random.default_rng(0)
    truth = rng.random((16, 16, 28), dtype=np.float32)
    np.save(tmp_path / "scene.npy", np.clip(truth + 0.01 * rng.standard_normal(truth.shape), 0, 1).astype(np.float32))
    (tmp_path / "gt").mkdir()
    np.save(tmp_path / "gt" / "scene.npy", truth)
    code, _, err = run(["evaluate", tmp_path / "scene.npy", "--truth", tmp_path / "gt" / "scene.npy",
                        "--output-file", out / "m.csv"], capsys)
    assert code == 0, err
    assert not stale.exists() and mine.read_text() == "user data"
    assert (out / "m.csv").read_text().splitlines()[1].startswith("scene,")
    assert any(line.startswith("note: removed 1 temporary file(s)") for line in err.splitlines())


# --- 3. output sets: the record is written last and marks the set complete ------------------------------------


def test_the_record_is_the_last_file_of_each_set(captures, tmp_path, capsys, monkeypatch):
    import hsra_cli.io as hsra_io

    order: list[str] = []
    real = hsra_io.atomic_output

    def logged(path, overwrite=False):
        order.append(Path(path).name)
        return real(path, overwrite)

    monkeypatch.setattr(hsra_io, "atomic_output", logged)
    code, _, err = run(["reconstruct", captures / "a.mat", "--mask", captures / "mask.mat", "-o", tmp_path / "o"], capsys)
    assert code == 0, err
    expected = [path.name for path in output_paths(tmp_path / "o", "a", "mat", previews=True).values()]
    assert expected[-1] == "a.json" and {"a.mat", "a_rgb.png", "a_bands.png"} <= set(expected)
    assert order == expected  # every file of the set, each once, the record last
    assert set_complete(output_paths(tmp_path / "o", "a", "mat", previews=True))


def test_skip_existing_redoes_an_incomplete_set_and_skips_complete_ones(captures, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reconstruct", captures, "--mask", captures / "mask.mat", "-o", out]
    assert run(args, capsys)[0] == 0
    (out / "b.json").unlink()  # a crash between b's previews and its record
    (out / "c_bands.png").unlink()  # or a full disk before c's second preview (its record then never came)
    (out / "c.json").unlink()
    untouched = (out / "a.json").stat().st_mtime_ns
    code, out_text, err = run([*args, "--skip-existing"], capsys)
    assert code == 0, err
    assert "2 done, 1 skipped, 0 failed" in err
    assert sorted(Path(p).name for p in out_text.split()) == ["b.mat", "c.mat"]
    assert {"b.json", "c.json", "c_bands.png"} <= set(listing(out))
    assert (out / "a.json").stat().st_mtime_ns == untouched
    # Without --skip-existing the incomplete set is named and nothing is replaced.
    (out / "b.json").unlink()
    code, _, err = run(["reconstruct", captures / "b.mat", *args[2:]], capsys)
    assert code == 2 and "b.json is missing" in one_line_error(err) and "--skip-existing" in err


@pytest.mark.parametrize("foreign", ["my notes, not an hsra record", '{"mine": true}', "[1, 2, 3]"])
def test_a_foreign_file_under_a_record_name_is_never_replaced_by_skip_existing(captures, tmp_path, capsys, foreign):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text(foreign)  # a JSON object of the user's too: only what hsra wrote is a record
    code, _, err = run(["reconstruct", captures / "a.mat", "--mask", captures / "mask.mat", "-o", out,
                        "--skip-existing"], capsys)
    assert code == 2 and "was not written by hsra" in one_line_error(err)
    assert (out / "a.json").read_text() == foreign


@pytest.mark.parametrize("name", ["a.mat", "a_rgb.png"])
def test_a_users_file_in_a_set_without_a_record_is_never_replaced_by_skip_existing(captures, tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    if name.endswith(".mat"):  # a cube of the user's, not one of reconstruct's (its metadata names no model)
        write_cube(out / name, smooth_cube(24, 24))
    else:
        (out / name).write_bytes(b"\x89PNG my own picture")
    before = (out / name).read_bytes()
    code, _, err = run(["reconstruct", captures / "a.mat", "--mask", captures / "mask.mat", "-o", out,
                        "--skip-existing"], capsys)
    assert code == 2 and f"{name} exists and was not written by hsra" in one_line_error(err)
    assert (out / name).read_bytes() == before and listing(out) == [name]


def test_a_full_disk_fails_that_input_alone_without_a_partial_set(captures, tmp_path, capsys, monkeypatch):
    import hsra_cli.render as render

    real = render.write_previews

    def disk_full_for_b(cube, wavelengths, out_dir, stem, *args, **kwargs):
        if stem == "b":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(cube, wavelengths, out_dir, stem, *args, **kwargs)

    monkeypatch.setattr(render, "write_previews", disk_full_for_b)
    out = tmp_path / "out"
    args = ["reconstruct", captures, "--mask", captures / "mask.mat", "-o", out]
    code, _, err = run(args, capsys)
    assert code == 1 and "2 done, 0 skipped, 1 failed" in err and "No space left" in err
    assert not [n for n in listing(out) if n.startswith("b")]  # b's cube went with its failed set
    monkeypatch.setattr(render, "write_previews", real)
    code, out_text, err = run([*args, "--skip-existing"], capsys)
    assert code == 0 and out_text.split() == [str(out / "b.mat")]


# --- 4. one bad input never stops the others ------------------------------------------------------------------


def _huge_npy(path: Path) -> None:
    """A .npy whose header declares 10⁶×10⁶ float64 (8 TB) over a few bytes of data."""
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
        stream.write(b"\0" * 80)


def test_reconstruct_processes_every_good_input_past_missing_corrupt_and_huge_ones(captures, tmp_path, capsys):
    (captures / "broken.mat").write_bytes(b"garbage" * 50)
    _huge_npy(captures / "huge.npy")
    code, out, err = run(["reconstruct", tmp_path / "missing.mat", captures, "--mask", captures / "mask.mat", "-o",
                          tmp_path / "out", "--no-previews"], capsys)
    assert code == 1
    assert sorted(Path(p).name for p in out.split()) == ["a.mat", "b.mat", "c.mat"]
    failures = [line for line in err.splitlines() if line.startswith("failed")]
    assert len(failures) == 3
    assert any("missing.mat" in f and "does not exist" in f for f in failures)
    assert any("broken.mat" in f and "cannot read" in f for f in failures)
    assert any("huge.npy" in f and "memory" in f for f in failures)
    assert err.strip().splitlines()[-1] == "3 done, 0 skipped, 3 failed"


def test_simulate_processes_every_good_cube_past_bad_ones(tmp_path, capsys):
    good = tmp_path / "good.mat"
    write_cube(good, smooth_cube(16, 16))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    code, out, err = run(["simulate", tmp_path / "missing.mat", corrupt, good, "-o", tmp_path / "sim"], capsys)
    assert code == 1
    assert {Path(p).name for p in out.split()} == {"mask.mat", "good.mat", "good_meas.png"}
    assert "missing.mat" in err and "corrupt.h5" in err
    assert err.strip().splitlines()[-1] == "1 done, 0 skipped, 2 failed"


def test_a_cube_that_fails_after_it_is_read_fails_alone_and_a_call_that_writes_nothing_leaves_nothing(tmp_path, capsys):
    flat, tiny, good = tmp_path / "flat.npy", tmp_path / "tiny.npy", tmp_path / "good.npy"
    np.save(flat, np.ones((16, 16), np.float32))  # read, then refused: not a cube
    np.save(tiny, np.ones((3, 3), np.float32))  # a capture too narrow for 28 bands
    np.save(good, smooth_cube(16, 16))
    code, out, err = run(["simulate", flat, good, "-o", tmp_path / "sim"], capsys)
    assert code == 1 and "Traceback" not in err and "internal error" not in err
    assert {Path(p).name for p in out.split()} == {"mask.mat", "good.mat", "good_meas.png"}
    assert any(line.startswith("failed") and "flat.npy" in line and "3-D" in line for line in err.splitlines())
    # every input fails: no folder, no mask.mat, one line; a folder that was there stays, as it was
    for argv in (["simulate", flat, "-o", tmp_path / "a" / "b"],
                 ["reconstruct", tiny, "--mask", tmp_path / "sim" / "mask.mat", "-o", tmp_path / "a" / "b"]):
        code, out, err = run(argv, capsys)
        assert code == 1 and out == "" and one_line_error(err)
        assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    code, _, _ = run(["simulate", flat, "-o", tmp_path / "kept"], capsys)
    assert code == 1 and (tmp_path / "kept").is_dir() and listing(tmp_path / "kept") == []


def test_render_processes_every_good_cube_past_bad_ones(tmp_path, capsys):
    good = tmp_path / "good.npy"
    np.save(good, smooth_cube(16, 16))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    code, out, err = run(["render", tmp_path, "-o", tmp_path / "png"], capsys)
    assert code == 1
    assert {Path(p).name for p in out.split()} == {"good_rgb.png", "good_bands.png"}
    assert "bad.npy" in err and err.strip().splitlines()[-1] == "1 done, 0 skipped, 1 failed"


def test_evaluate_scores_every_good_pair_past_bad_ones(tmp_path, capsys):
    preds, truths = tmp_path / "pred", tmp_path / "gt"
    preds.mkdir()
    truths.mkdir()
    for name in ("s1", "s2"):
        cube = smooth_cube(16, 16, seed=len(name))
        np.save(preds / f"{name}.npy", np.clip(cube + 0.01, 0, 1))
        np.save(truths / f"{name}.npy", cube)
    (preds / "s3.npy").write_bytes(b"broken")
    np.save(truths / "s3.npy", smooth_cube(16, 16))
    code, out, err = run(["evaluate", preds, "--truth", truths, "--json"], capsys)
    assert code == 1
    assert [s["name"] for s in json.loads(out)["scenes"]] == ["s1", "s2"]
    assert "s3.npy" in err and "2 scored, 1 failed" in err


# --- 5., 6. the folders simulate writes ----------------------------------------------------------------------


def test_reconstructing_the_folder_simulate_wrote_skips_its_mask(tmp_path, capsys):
    cube_path = tmp_path / "scene.mat"
    write_cube(cube_path, smooth_cube(24, 24))
    assert run(["simulate", cube_path, "-o", tmp_path / "sim", "-q"], capsys)[0] == 0
    code, out, err = run(["reconstruct", tmp_path / "sim", "--mask", tmp_path / "sim" / "mask.mat", "-o",
                          tmp_path / "rec", "--no-previews"], capsys)
    assert code == 0, err
    assert out.split() == [str(tmp_path / "rec" / "scene.mat")]
    assert "skipping" in err and "mask.mat" in err


def test_the_mask_file_named_among_the_captures_is_skipped_and_alone_is_refused(captures, tmp_path, capsys):
    # what a shell makes of `hsra reconstruct caps/*.mat --mask caps/mask.mat`
    named = sorted(captures.glob("*.mat"))
    code, out, err = run(["reconstruct", *named, "--mask", captures / "mask.mat", "-o", tmp_path / "rec",
                          "--no-previews"], capsys)
    assert code == 0, err
    assert sorted(Path(p).name for p in out.split()) == ["a.mat", "b.mat", "c.mat"]
    assert "it is the --mask file" in err and "3 done, 0 skipped, 0 failed" in err
    code, out, err = run(["reconstruct", captures / "mask.mat", "--mask", captures / "mask.mat", "-o",
                          tmp_path / "alone"], capsys)
    assert code == 2 and out == "" and not (tmp_path / "alone").exists()
    assert "the only input given is the --mask file" in one_line_error(err)


def test_a_file_holding_another_role_s_array_is_named_for_what_it_is(captures, tmp_path, capsys):
    other_mask = tmp_path / "other_mask.mat"  # the same aperture, another copy: not the --mask file
    other_mask.write_bytes((captures / "mask.mat").read_bytes())
    code, out, err = run(["reconstruct", other_mask, "--mask", captures / "mask.mat", "-o", tmp_path / "r1"], capsys)
    line = one_line_error(err)
    assert code == 1 and out == "" and not list((tmp_path / "r1").glob("*"))
    assert "holds a coded aperture ('mask'), not a measurement" in line and "--mask" in line
    code, _, err = run(["reconstruct", captures / "a.mat", "--mask", captures / "b.mat", "-o", tmp_path / "r2"], capsys)
    line = one_line_error(err)
    assert code == 1 and "holds a measurement ('meas'), not a mask" in line and "--mask-key meas" in line
    code, _, err = run(["simulate", other_mask, "-o", tmp_path / "s"], capsys)
    assert code == 1 and "holds a coded aperture ('mask'), not a cube" in one_line_error(err)
    # in a batch it fails alone, with the same words, and the captures are reconstructed
    code, out, err = run(["reconstruct", captures, other_mask, "--mask", captures / "mask.mat", "-o",
                          tmp_path / "r3", "--no-previews"], capsys)
    assert code == 1 and len(out.split()) == 3
    assert "not a measurement" in err and "3 done, 0 skipped, 1 failed" in err
    # --key says what it is: the array is then taken as a measurement (this one is then too narrow for its mask)
    code, _, err = run(["reconstruct", other_mask, "--key", "mask", "--mask", captures / "mask.mat", "-o",
                        tmp_path / "r4"], capsys)
    assert code == 1 and "not a measurement" not in one_line_error(err)


def test_simulating_one_cube_per_call_into_one_folder_keeps_the_same_mask(tmp_path, capsys):
    mask_path = tmp_path / "m.mat"
    write_array(mask_path, (np.random.default_rng(1).random((16, 16)) > 0.5).astype(np.float32), key="mask")
    for name in ("one", "two"):
        write_cube(tmp_path / f"{name}.mat", smooth_cube(16, 16))
        code, _, err = run(["simulate", tmp_path / f"{name}.mat", "--mask", mask_path, "-o", tmp_path / "sim"], capsys)
        assert code == 0, err
    assert {"one.mat", "two.mat", "mask.mat"} <= set(listing(tmp_path / "sim"))
    kept = (tmp_path / "sim" / "mask.mat").read_bytes()
    other = tmp_path / "other.mat"
    write_array(other, np.ones((16, 16), np.float32), key="mask")
    write_cube(tmp_path / "three.mat", smooth_cube(16, 16))
    code, _, err = run(["simulate", tmp_path / "three.mat", "--mask", other, "-o", tmp_path / "sim"], capsys)
    assert code == 2 and "different mask" in one_line_error(err)
    assert (tmp_path / "sim" / "mask.mat").read_bytes() == kept and not (tmp_path / "sim" / "three.mat").exists()


# --- 7. data that is physically wrong -------------------------------------------------------------------------


def test_integer_measurements_are_scaled_to_unit_range_and_the_record_says_so(captures, tmp_path, capsys):
    measurement = read_measurement(captures / "a.mat")[0]
    counts = np.rint(measurement / measurement.max() * 4000).astype(np.uint16)  # a 12-bit camera in uint16
    scipy.io.savemat(tmp_path / "raw.mat", {"meas": counts})
    code, _, err = run(["reconstruct", tmp_path / "raw.mat", "--mask", captures / "mask.mat", "-o", tmp_path / "out",
                        "--no-previews"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "raw.json").read_text())
    assert record["input"]["integer_dtype"] == "uint16" and record["input"]["scaled_by"] == "1/65535"
    assert record["normalization"]["mode"] == "max"  # peaks below 1 once scaled: normalised as a real capture
    cube = read_cube(tmp_path / "out" / "raw.mat")[0]
    assert cube.max() < 3  # not thousands, as before


def test_negative_masks_and_measurements_are_refused_and_noise_is_warned_about(captures, tmp_path, capsys):
    mask = scipy.io.loadmat(captures / "mask.mat")["mask"]
    scipy.io.savemat(tmp_path / "signed_mask.mat", {"mask": mask - 0.5})
    code, _, err = run(["reconstruct", captures / "a.mat", "--mask", tmp_path / "signed_mask.mat", "-o",
                        tmp_path / "o1"], capsys)
    assert code == 1 and "negative" in one_line_error(err) and not (tmp_path / "o1").exists()

    measurement = read_measurement(captures / "a.mat")[0]
    scipy.io.savemat(tmp_path / "signed.mat", {"meas": measurement - measurement.mean()})
    code, _, err = run(["reconstruct", tmp_path / "signed.mat", "--mask", captures / "mask.mat", "-o",
                        tmp_path / "o2"], capsys)
    assert code == 1 and "negative" in one_line_error(err)

    noisy = measurement.copy()
    noisy[0, :5] = -0.01 * measurement.max()  # dark-frame noise
    scipy.io.savemat(tmp_path / "noisy.mat", {"meas": noisy})
    code, _, err = run(["reconstruct", tmp_path / "noisy.mat", "--mask", captures / "mask.mat", "-o",
                        tmp_path / "o3", "--no-previews"], capsys)
    assert code == 0
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        "warning: noisy.mat: measurement holds 5 negative values (down to "
        f"{-0.01 * measurement.max():.3g}, 1.0% of the peak); taken as noise"
    ]
    assert json.loads((tmp_path / "o3" / "noisy.json").read_text())["warnings"]


def test_an_all_zero_truth_is_refused(tmp_path, capsys):
    np.save(tmp_path / "pred.npy", smooth_cube(16, 16))
    np.save(tmp_path / "truth.npy", np.zeros((16, 16, BANDS), np.float32))
    code, out, err = run(["evaluate", tmp_path / "pred.npy", "--truth", tmp_path / "truth.npy"], capsys)
    assert code == 1 and out == "" and "all zero" in one_line_error(err)


# --- 9. output names for comparing methods --------------------------------------------------------------------


def test_name_template_lets_several_methods_write_into_one_folder_and_evaluate_pairs_them(tmp_path, capsys):
    truth = tmp_path / "gt" / "scene.mat"
    truth.parent.mkdir()
    write_cube(truth, smooth_cube(32, 32))
    assert run(["simulate", truth, "-o", tmp_path / "sim", "-q"], capsys)[0] == 0
    common = [tmp_path / "sim", "--mask", tmp_path / "sim" / "mask.mat", "-o", tmp_path / "compare", "--name",
              "{stem}_{model}", "--no-previews"]
    assert run(["reconstruct", *common, "--model", "gap-tv"], capsys)[0] == 0
    code, _, err = run(["reconstruct", *common, "--model", "s", "--refine", "0"], capsys)
    if code != 0 and "weights" in err:
        pytest.skip("the shipped hsra-s weights are not installed")
    assert code == 0, err
    assert {"scene_gap-tv.mat", "scene_gap-tv.json", "scene_hsra-s.mat", "scene_hsra-s.json"} <= set(
        listing(tmp_path / "compare"))
    code, out, err = run(["evaluate", tmp_path / "compare", "--truth", tmp_path / "gt", "--json"], capsys)
    assert code == 0, err
    scenes = json.loads(out)["scenes"]
    assert [s["name"] for s in scenes] == ["scene_gap-tv", "scene_hsra-s"]
    assert all(s["truth"] == str(truth) for s in scenes)


def test_same_named_inputs_from_two_folders_are_told_apart_by_parent(captures, tmp_path, capsys):
    other = tmp_path / "day2"
    other.mkdir()
    (other / "a.mat").write_bytes((captures / "a.mat").read_bytes())
    args = ["reconstruct", captures / "a.mat", other / "a.mat", "--mask", captures / "mask.mat", "-o", tmp_path / "o",
            "--no-previews"]
    code, _, err = run(args, capsys)
    assert code == 2 and "--name" in one_line_error(err)
    code, out, err = run([*args, "--name", "{parent}_{stem}"], capsys)
    assert code == 0, err
    assert sorted(Path(p).name for p in out.split()) == ["caps_a.mat", "day2_a.mat"]


@pytest.mark.parametrize("template,fragment", [
    ("{stem}_{method}", "unknown placeholder {method}"), ("sub/{stem}", "folder"), ("{0}", "unknown placeholder"),
    ("{stem", "not a name template"),
])
def test_bad_name_templates_are_usage_errors_listing_the_placeholders(captures, tmp_path, capsys, template, fragment):
    code, _, err = run(["reconstruct", captures / "a.mat", "--mask", captures / "mask.mat", "-o", tmp_path / "o",
                        "--name", template], capsys)
    assert code == 2
    line = one_line_error(err)
    assert fragment in line and not (tmp_path / "o").exists()


def test_simulate_names_outputs_by_template(tmp_path, capsys):
    write_cube(tmp_path / "scene.mat", smooth_cube(16, 16))
    code, out, _ = run(["simulate", tmp_path / "scene.mat", "-o", tmp_path / "sim", "--noise", "gaussian",
                        "--noise-sigma", "0.01", "--name", "{stem}_{noise}_{seed}"], capsys)
    assert code == 0
    assert {Path(p).name for p in out.split()} == {"mask.mat", "scene_gaussian_0.mat", "scene_gaussian_0_meas.png"}


# --- 11. progress --------------------------------------------------------------------------------------------


def test_each_timing_line_names_its_own_input(captures, tmp_path, capsys):
    code, _, err = run(["reconstruct", captures, "--mask", captures / "mask.mat", "-o", tmp_path / "o",
                        "--no-previews"], capsys)
    assert code == 0
    items = [line for line in err.splitlines() if line.startswith("[")]
    assert len(items) == 3
    for index, (line, name) in enumerate(zip(items, ["a.mat", "b.mat", "c.mat"])):
        assert line.startswith(f"[{index + 1}/3] {name}: ") and " s, residual " in line


def test_on_a_terminal_a_progress_bar_shows_the_batch_with_its_eta():
    from rich.console import Console

    from hsra_cli.cli._progress import BatchProgress

    stream = stdio.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, highlight=False)
    with BatchProgress(3, console=console) as bar:
        assert bar.live
        bar.start("a.mat", 0)
        bar.step(40, 80)
        bar.line("[1/3] a.mat: 0.10 s")
        bar.advance()
        bar._progress.refresh()
    text = stream.getvalue()
    assert "[1/3] a.mat: 0.10 s" in text and "eta" in text and "40/80" in text and "1/3" in text
    plain = Console(file=stdio.StringIO(), force_terminal=False)
    with BatchProgress(3, console=plain) as bar:
        assert not bar.live
        bar.line("[1/3] a.mat: 0.10 s")
    assert plain.file.getvalue() == "[1/3] a.mat: 0.10 s\n"


def test_a_signal_inside_a_deferred_step_is_raised_when_the_step_ends():
    """The CLI's handler raises Interrupted at once, except inside interrupts_deferred (a set counted as done and its
    path printed): there it waits for the end of the block, so the count and the printed paths always agree."""
    from hsra_cli.errors import Interrupted, interrupts_deferred, raise_interrupted

    with pytest.raises(Interrupted):
        raise_interrupted(signal.SIGTERM)
    steps = []
    with pytest.raises(Interrupted) as caught:
        with interrupts_deferred():
            steps.append("counted")
            raise_interrupted(signal.SIGTERM)  # what the handler does when the signal lands here
            steps.append("printed")
    assert steps == ["counted", "printed"] and caught.value.exit_code == 143
    with interrupts_deferred():  # nothing pending afterwards
        pass
