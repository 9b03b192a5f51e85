"""`hsra train`: the types of a --config file's values, the card of a stopped run, and --pretrained's refusals."""

from __future__ import annotations

import json

import pytest

from hsra_cli.cli import main
from test_train import TINY, files, tiny_model, train_args  # noqa: F401  (fixtures used by name)


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("hsra: error:") and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("line, words", [
    ('patch-size = "big"', "--patch-size in {toml}: expected an integer, got 'big'"),
    ('lr = "fast"', "--lr in {toml}: expected a number, got 'fast'"),
    ('val-every = "often"', "--val-every in {toml}: expected an integer, got 'often'"),
    ('model = ["hsra-s"]', "--model in {toml}: expected a string, got ['hsra-s']"),
    ('synthetic-stream = "false"', "--synthetic-stream in {toml}: expected true or false, got 'false'"),
    ("steps = 2.7", "--steps in {toml}: expected an integer, got 2.7"),
    ("mosaic = 1", "--mosaic in {toml}: expected true or false, got 1"),
    ('data = ["a.npy", 3]', "--data in {toml}: expected a list of strings, got ['a.npy', 3]"),
    ("mask-offset = [1.5, 2]", "--mask-offset in {toml}: expected 2 values [integer, integer]"),
])
def test_config_values_of_the_wrong_type_are_one_line_usage_errors(tmp_path, capsys, line, words):
    toml = tmp_path / "run.toml"
    toml.write_text(line + "\n")
    assert main(["train", "--config", str(toml), "-o", str(tmp_path / "out")]) == 2
    assert words.format(toml=toml) in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_config_file_that_is_a_folder_or_not_text_says_so(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "is a folder; expected a TOML or JSON file" in one_line_error(capsys.readouterr().err)
    binary = tmp_path / "run.toml"
    binary.write_bytes(b"\xff\xfe\x00\x81binary")
    assert main(["train", "--config", str(binary), "-o", str(tmp_path / "out")]) == 1
    assert "is not UTF-8 text; expected a TOML or JSON file" in one_line_error(capsys.readouterr().err)


def test_config_values_are_normalised_to_the_options_types(tmp_path):
    from hsra_cli.train.config import load_config_file

    toml = tmp_path / "run.toml"
    toml.write_text('data = "stack.npz:0-3"\nsteps = 3.0\ngain = 1\nmask-offset = [1, 2]\n')
    assert load_config_file(toml) == {"data": ["stack.npz:0-3"], "steps": 3, "gain": 1.0, "mask_offset": (1, 2)}
    assert isinstance(load_config_file(toml)["steps"], int)


def test_a_single_data_string_in_a_config_is_one_source_and_trains(files, capsys):  # noqa: F811
    toml = files / "run.toml"
    toml.write_text(
        f'model = "{TINY}"\ndata = "{files / "stack.npy"}:0-1"\nmask = "{files / "mask.npy"}"\n'
        "patch-size = 16\nbatch-size = 2\nsteps = 2.0\nthreads = 1\n"
    )
    assert main(["train", "--config", str(toml), "-o", str(files / "run")]) == 0
    record = json.loads((files / "run" / "run.json").read_text())["config"]
    assert record["data"] == [f"{files / 'stack.npy'}:0-1"] and record["steps"] == 2


def test_the_card_of_a_run_stopped_by_max_time_says_at_which_step_of_how_many(files, capsys):  # noqa: F811
    from hsra_cli.weights import _steps_text

    out = files / "timed"
    args = train_args(files, out, "--max-time", "0.001s")
    args[args.index("--steps") + 1] = "20000"
    assert main(args) == 0
    capsys.readouterr()
    step = json.loads((out / "run.json").read_text())["step"]
    card = (out / TINY / "README.md").read_text()
    assert f"- steps: {step} of 20000 planned (stopped early by its --max-time budget)" in card
    sigterm = _steps_text({"steps": 178, "steps_planned": 20000, "stopped_by": "SIGTERM"})
    assert sigterm == "178 of 20000 planned (stopped early by SIGTERM)"
    assert _steps_text({"steps": 20000, "steps_planned": 20000, "stopped_by": None}) == "20000"


@pytest.mark.parametrize("make, words", [
    (lambda d: (d / "evil.pt").write_bytes(b"\x80\x04not a model") and d / "evil.pt",
     "only .safetensors weights files or model folders (config.json + model.safetensors) are accepted; "
     "pickled checkpoints are never loaded"),
    (lambda d: (d / "somefolder").mkdir() or d / "somefolder",
     "holds no model: expected a model folder with config.json + model.safetensors"),
])
def test_pretrained_that_is_no_model_says_what_is_accepted(files, capsys, make, words):  # noqa: F811
    source = make(files)
    assert main(train_args(files, files / "ft", "--pretrained", str(source))) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"--pretrained {str(source)!r}" in line and words in line


def test_weights_given_a_folder_that_is_no_model_says_what_is_expected(tmp_path):
    from hsra_cli.errors import WeightsError
    from hsra_cli.weights import load_model

    with pytest.raises(WeightsError, match="holds no model: expected a model folder with config.json"):
        load_model("hsra-s", weights=tmp_path)


# --------------------------------------------------------------------------------------------------
# flags against a config, where OUT may be, loose config spots, value ranges
def test_a_boolean_a_config_sets_can_be_turned_off_by_a_flag(files, capsys):  # noqa: F811
    toml = files / "run.toml"
    toml.write_text(f'model = "{TINY}"\nsynthetic-stream = true\nsynthetic-fraction = 0.5\n')
    out = files / "run"
    args = train_args(files, out, "--no-synthetic-stream")
    args[args.index("--steps") + 1] = "1"
    assert main([*args[:1], "--config", str(toml), *args[1:]]) == 0, capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["config"]["synthetic_stream"] is False


def test_out_inside_an_exported_model_folder_is_refused(files, capsys):  # noqa: F811
    model = files / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"x")
    for out in (model, model / "sub"):
        assert main(train_args(files, out)) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "model folder" in line and "give a run folder outside it" in line
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors"]


def test_config_loose_spots_are_closed(tmp_path, capsys):
    from hsra_cli.train.config import load_config_file

    toml = tmp_path / "run.toml"
    toml.write_text("patch-size = 32\npatch_size = 64\n")
    assert main(["train", "--config", str(toml), "-o", str(tmp_path / "out")]) == 2
    assert "sets patch-size twice" in one_line_error(capsys.readouterr().err)
    # numbers as the command line takes them; Charbonnier's ε is an option (flag and file)
    toml.write_text('lr = "1e-4"\nsteps = "30"\ncharbonnier-eps = 1e-2\n')
    assert load_config_file(toml) == {"lr": 1e-4, "steps": 30, "charbonnier_eps": 1e-2}
    assert main(["train", "--model", "hsra-s", "--charbonnier-eps", "0", "--data", "x", "--mask", "y",
                 "-o", str(tmp_path / "out")]) == 2
    assert "Charbonnier ε must be positive" in one_line_error(capsys.readouterr().err)
    # a JSON config with a key twice is refused, as TOML refuses it (json alone would keep the last)
    doubled = tmp_path / "doubled.json"
    doubled.write_text('{"steps": 3, "steps": 2}')
    assert main(["train", "--config", str(doubled), "-o", str(tmp_path / "out")]) == 1
    assert "'steps' appears more than once" in one_line_error(capsys.readouterr().err)


def test_seed_and_max_time_outside_what_the_docs_allow_are_usage_errors(tmp_path, capsys):
    from hsra_cli.errors import UsageError
    from hsra_cli.train.config import parse_duration

    assert main(["train", "--model", "hsra-s", "--seed", "99999999999999999999", "--data", "x", "--mask", "y",
                 "-o", str(tmp_path / "out")]) == 2
    assert "--seed must be in [0, 4294967295]" in one_line_error(capsys.readouterr().err)
    assert [parse_duration(t) for t in ("90s", "8m", "2h", "1h30m", "1h30m15s", "45", "0.5s")] == \
        [90, 480, 7200, 5400, 5415, 45, 0.5]
    for text in ("1h1h", "30m1h", "2d", "8M", "1 h", "h", "", "1s30m"):
        with pytest.raises(UsageError, match="is not a duration"):
            parse_duration(text)
    assert main(["train", "--model", "hsra-s", "--max-time", "8M", "--data", "x", "--mask", "y",
                 "-o", str(tmp_path / "out")]) == 2
    assert "--max-time '8M' is not a duration" in one_line_error(capsys.readouterr().err)
