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
    toml.write_text(f'model = "{TINY}"\nsynthetic-stream = true\n')
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


# --------------------------------------------------------------------------------------------------
# QA sweep of `hsra train`: mask content on resume, non-finite numbers, options without effect, consistency
def test_resume_refuses_a_mask_whose_values_changed_and_older_checkpoints_still_resume(files, capsys):  # noqa: F811
    import numpy as np

    out = files / "run"
    assert main(train_args(files, out, "--stop-after", "2")) == 0
    mask = np.load(files / "mask.npy")
    np.save(files / "mask.npy", 1 - mask)  # the same path, other values
    capsys.readouterr()
    assert main(train_args(files, out, "--resume")) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "--resume: the mask differs from the checkpoint's" in line and repr(str(files / "mask.npy")) in line
    assert json.loads((out / "run.json").read_text())["step"] == 2  # nothing was trained on
    np.save(files / "mask.npy", mask)
    # a checkpoint written before the masks' digests were kept resumes, and then records them
    state_file = out / "checkpoints" / "last.json"
    state = json.loads(state_file.read_text())
    del state["state"]["mask_fingerprints"]
    state_file.write_text(json.dumps(state))
    assert main(train_args(files, out, "--resume", "--stop-after", "4")) == 0, capsys.readouterr().err
    assert len(json.loads(state_file.read_text())["state"]["mask_fingerprints"]) == 1


@pytest.mark.parametrize("flag", [
    "--lr", "--min-lr", "--gain", "--exposure", "--clip-grad", "--charbonnier-eps", "--ema", "--noise-fraction",
    "--generated-masks", "--synthetic-fraction",
])
def test_an_infinite_number_is_a_usage_error_before_out_exists(files, capsys, flag):  # noqa: F811
    out = files / "inf"
    assert main(train_args(files, out, flag, "inf")) == 2
    assert f"{flag} must be a finite number, got inf" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_every_number_option_is_checked_to_be_finite():
    import typing

    from hsra_cli.errors import UsageError
    from hsra_cli.train import TrainConfig
    from hsra_cli.train.config import FLOAT_OPTIONS

    hints = typing.get_type_hints(TrainConfig)
    numbers = {name for name, hint in hints.items() if float in (hint, *typing.get_args(hint))}
    assert numbers == set(FLOAT_OPTIONS)
    config = TrainConfig(out="x", model=TINY, data=["a.npy"], mask=["m.npy"], max_time=float("inf"))
    with pytest.raises(UsageError, match="--max-time must be a finite number, got inf"):
        config.check()


@pytest.mark.parametrize("extra, words", [
    (["--synthetic-stream", "--synthetic-fraction", "0"], "--synthetic-fraction 0.0 has no effect without --data"),
    (["--synthetic", "2", "--synthetic-size", "24", "--synthetic-fraction", "0.5"],
     "--synthetic-fraction 0.5 has no effect without --data"),
    (["--data", "{stack}", "--synthetic-fraction", "0.5"],
     "--synthetic-fraction 0.5 has no effect without synthetic data; give --synthetic N or --synthetic-stream"),
    (["--data", "{stack}", "--synthetic-size", "31"], "--synthetic-size 31 has no effect without --synthetic N"),
    (["--synthetic-stream", "--synthetic-size", "31"], "--synthetic-size 31 has no effect without --synthetic N"),
])
def test_synthetic_options_without_effect_are_refused(files, capsys, extra, words):  # noqa: F811
    out = files / "run"
    extra = [item.format(stack=files / "stack.npy") for item in extra]
    args = ["train", "--model", TINY, *extra, "--mask", str(files / "mask.npy"), "-o", str(out),
            "--patch-size", "16", "--batch-size", "2", "--steps", "2", "--threads", "1"]
    assert main(args) == 2
    assert words in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_a_stream_without_data_may_state_the_share_it_takes():
    from hsra_cli.train import TrainConfig

    config = TrainConfig(out="x", model=TINY, synthetic_stream=True, synthetic_fraction=1.0, mask=["m.npy"])
    config.check()
    assert config.stream_fraction == 1.0


def test_a_folder_or_an_all_zero_array_as_mask_is_said_as_the_other_commands_say_it(files, capsys):  # noqa: F811
    import numpy as np

    out = files / "run"
    (files / "folder").mkdir()
    args = train_args(files, out)
    args[args.index("--mask") + 1] = str(files / "folder")
    assert main(args) == 1
    assert f"mask {str(files / 'folder')!r} is a folder; expected a file" in one_line_error(capsys.readouterr().err)
    np.save(files / "zero.npy", np.zeros((40, 40), np.float32))
    args[args.index("--mask") + 1] = str(files / "zero.npy")
    assert main(args) == 1
    assert "mask is all zero; expected a coded aperture with open pixels" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_a_scene_named_twice_is_trained_on_once_with_a_note(files, capsys):  # noqa: F811
    from hsra_cli.train.data import load_scenes

    stack = files / "stack.npy"
    repeated: list[str] = []
    scenes = load_scenes([f"{stack}:0,0", f"{stack}:0", f"{stack}:0-1"], repeated=repeated)
    assert [scene.name for scene in scenes] == ["stack.npy:0", "stack.npy:1"] and repeated == ["stack.npy:0"]
    out = files / "run"
    args = train_args(files, out, "--data", f"{stack}:1")
    args[args.index("--steps") + 1] = "1"
    assert main(args) == 0
    assert "note: --data names stack.npy:1 more than once; each scene is trained on once" in capsys.readouterr().err
    assert json.loads((out / TINY / "config.json").read_text())["training"]["scenes"] == ["stack.npy:0", "stack.npy:1"]


def test_a_damaged_run_json_on_resume_is_named_as_the_runs_record_not_as_config(files, capsys):  # noqa: F811
    out = files / "run"
    assert main(train_args(files, out, "--stop-after", "2")) == 0
    (out / "run.json").write_text("{garbage")
    capsys.readouterr()
    assert main(["train", "-o", str(out), "--resume", "--threads", "1"]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert f"the run.json of the run being resumed ({str(out / 'run.json')!r}) is not valid JSON" in line
    assert "--config" not in line


def test_data_messages_name_an_array_as_the_readers_do(files, capsys):  # noqa: F811
    import numpy as np

    np.savez(files / "bright.npz", truth=np.full((40, 40, 8), 2.0, np.float32))
    args = train_args(files, files / "run")
    args[args.index("--data") + 1] = str(files / "bright.npz")
    assert main(args) == 1
    line = one_line_error(capsys.readouterr().err)
    assert f"{files / 'bright.npz'} ('truth') has values in" in line and "[truth]" not in line
