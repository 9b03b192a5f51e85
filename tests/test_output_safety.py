"""Where outputs go: an empty path option is refused (not taken as the current folder), a file where the output
folder should be is a usage error in every command, and a folder that refuses files gives one line naming the
output, never an internal error (QA sweep of 2026-12-03)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hsra_cli.io import write_cube

from test_cli_pipeline import one_line_error, run, smooth_cube


@pytest.fixture()
def cube(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty -o would have written here
    write_cube(tmp_path / "scene.mat", smooth_cube(16, 16))
    return tmp_path / "scene.mat"


@pytest.mark.parametrize("args", [
    ["-o", ""],
    ["--out="],
    ["-o", "sim", "--mask", ""],
])
def test_an_empty_path_option_is_refused_and_nothing_is_written(cube, tmp_path, capsys, args):
    before = sorted(os.listdir(tmp_path))
    code, out, err = run(["simulate", cube, *args], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "is empty; expected a path" in line
    assert sorted(os.listdir(tmp_path)) == before


def test_evaluate_and_reconstruct_refuse_an_empty_output_too(cube, tmp_path, capsys):
    code, _, err = run(["evaluate", cube, "--truth", cube, "--output-file", ""], capsys)
    assert code == 2 and "--output-file is empty" in one_line_error(err)
    code, _, err = run(["reconstruct", cube, "--mask", cube, "-o", ""], capsys)
    assert code == 2 and "-o is empty" in one_line_error(err)


def test_a_file_where_the_output_folder_should_be_is_a_usage_error_in_each_command(cube, tmp_path, capsys):
    code, _, _ = run(["simulate", cube, "-o", tmp_path / "sim", "-q"], capsys)
    assert code == 0
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for args in (["simulate", cube, "-o", taken],
                 ["reconstruct", tmp_path / "sim" / "scene.mat", "--mask", tmp_path / "sim" / "mask.mat",
                  "--model", "gap-tv", "-o", taken]):
        code, _, err = run(args, capsys)
        assert code == 2, (args[0], err)
        assert str(taken) in one_line_error(err) and "not a folder" in err
        assert taken.read_text() == "mine"


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys, which refuses new files")
def test_a_folder_that_refuses_files_gives_one_line_naming_the_output(cube, tmp_path, capsys):
    code, _, err = run(["simulate", cube, "-o", "/sys/kernel"], capsys)
    assert code == 1
    line = one_line_error(err)
    assert "cannot write /sys/kernel/" in line and "internal error" not in line and ".tmp" not in line
    code, _, err = run(["simulate", cube, "-o", "/sys/hsra-test"], capsys)
    assert code == 1
    line = one_line_error(err)
    assert "cannot create output folder /sys/hsra-test" in line and "internal error" not in line
    assert not Path("/sys/hsra-test").exists()


def test_a_file_with_several_arrays_asks_for_the_flag_that_names_that_file(cube, tmp_path, capsys):
    import numpy as np
    import scipy.io

    data = np.random.default_rng(0).random((16, 16, 28)).astype(np.float32)
    scipy.io.savemat(tmp_path / "two.mat", {"a": data, "b": data})
    scipy.io.savemat(tmp_path / "twomask.mat", {"m1": np.ones((16, 16)), "m2": np.ones((16, 16))})
    cases = [
        (["simulate", cube, "--mask", tmp_path / "twomask.mat", "-o", tmp_path / "s"], "--mask-key"),
        (["simulate", tmp_path / "two.mat", "-o", tmp_path / "s"], "--key"),
        (["evaluate", cube, "--truth", tmp_path / "two.mat"], "--truth-key"),
        (["evaluate", tmp_path / "two.mat", "--truth", cube], "--key"),
        (["train", "--model", "hsra-s", "--data", tmp_path / "two.mat", "--mask", tmp_path / "twomask.mat",
          "-o", tmp_path / "t", "--steps", "1"], "--data-key"),
        (["train", "--model", "hsra-s", "--data", cube, "--mask", tmp_path / "twomask.mat", "-o", tmp_path / "t",
          "--steps", "1"], "--mask-key"),
    ]
    for args, flag in cases:
        code, _, err = run(args, capsys)
        assert code == 1, args
        assert one_line_error(err).endswith(f"pass {flag} to choose one"), (args, err)
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()


def test_a_failed_write_leaves_no_folder_it_created(tmp_path):
    from hsra_cli.io import atomic_output

    target = tmp_path / "new" / "deeper" / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("the writer failed")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "kept" / "sub" / "out.json"):
            raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == ["kept"]
    assert os.listdir(tmp_path / "kept") == []
    with atomic_output(target) as temporary:
        temporary.write_text("whole")
    assert target.read_text() == "whole"


def test_a_mask_given_as_training_data_asks_for_data_key(tmp_path, capsys):
    import numpy as np
    import scipy.io

    scipy.io.savemat(tmp_path / "mask.mat", {"mask": (np.random.default_rng(0).random((32, 32)) > 0.5).astype(np.float32)})
    for option in ("--data", "--val-data"):
        extra = ["--data", tmp_path / "mask.mat"] if option == "--val-data" else []
        code, _, err = run(["train", "--model", "hsra-s", "--mask", tmp_path / "mask.mat", *extra, option,
                            tmp_path / "mask.mat", "-o", tmp_path / "t", "--steps", "1"], capsys)
        line = one_line_error(err)
        assert code == 1 and "not a cube" in line and "pass --data-key mask if it really is" in line, line
