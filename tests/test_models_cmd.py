"""`hsra models`: a model folder that cannot be loaded is not listed as installed weights."""

from __future__ import annotations

import json
import shutil

import pytest

from hsra_cli import weights as W


def _shipped():
    for folder in sorted(W.PACKAGE_MODELS.iterdir()):
        if folder.name.startswith("hsra-s.") and (folder / W.WEIGHTS_NAME).is_file():
            return folder
    pytest.skip("no shipped hsra-s weights")


def test_incomplete_damaged_and_corrupt_folders_are_not_installed_weights(tmp_path, monkeypatch, capsys):
    from test_cli_pipeline import run

    shipped = _shipped()
    models = tmp_path / "models"
    for tag in ("nosafe", "broken", "corrupt", "fine"):
        shutil.copytree(shipped, models / f"hsra-s.{tag}")
    (models / "hsra-s.nosafe" / W.WEIGHTS_NAME).unlink()  # config.json + README.md, no weights
    (models / "hsra-s.broken" / W.CONFIG_NAME).write_text("{not json")
    with open(models / "hsra-s.corrupt" / W.WEIGHTS_NAME, "ab") as stream:
        stream.write(b"x")
    monkeypatch.setenv("HSRA_MODELS_DIR", str(models))

    code, out, err = run(["models", "--json", "-q"], capsys)
    assert code == 0 and err == ""
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["hsra-s.fine"]["weights_installed"] is True and rows["hsra-s.fine"]["weights_problem"] is None
    for tag, state, words in (("nosafe", "incomplete", "holds no model.safetensors"),
                              ("broken", "damaged", "not readable JSON"),
                              ("corrupt", "damaged", "SHA-256")):
        row = rows[f"hsra-s.{tag}"]
        assert row["weights_installed"] is False and row["weights_state"] == state, row
        assert words in row["weights_problem"] and f"hsra-s.{tag}" in row["weights_problem"]

    code, out, err = run(["models"], capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("hsra-s.")}
    assert " incomplete " in lines["hsra-s.nosafe"] and " damaged " in lines["hsra-s.broken"]
    assert " damaged " in lines["hsra-s.corrupt"] and " yes " in lines["hsra-s.fine"]
    assert sum(line.startswith("warning:") for line in err.splitlines()) == 3

    code, out, err = run(["models", "info", "hsra-s.nosafe"], capsys)
    assert code == 0 and "weights incomplete" in err


def test_measured_on_names_the_validation_data_and_counts_scenes_only_where_they_are_not_named():
    from hsra_cli.weights import card_accuracy

    scenes = [{"name": "a.npz:4"}]
    by_file = {"validation": {"data": "a.npz:4", "scenes": scenes, "psnr_field": 30.0, "ssim_field": 0.9}}
    assert card_accuracy(by_file) == (30.0, 0.9, "a.npz:4 (1 scene)")
    labelled = {"validation": {"data": "KAIST scene 05, KAIST mask", "scenes": scenes, "psnr_float": 29.0}}
    assert card_accuracy(labelled) == (29.0, None, "KAIST scene 05, KAIST mask (float convention)")


def test_the_shipped_cards_say_which_scene_and_mask_they_were_measured_on():
    import json
    from pathlib import Path

    import hsra_cli

    for folder in sorted((Path(hsra_cli.__file__).parent / "models").iterdir()):
        card = json.loads((folder / "config.json").read_text())
        data = card["validation"]["data"]
        assert "scene" in data and "mask" in data and "/" not in data, (folder.name, data)


def test_an_empty_name_is_refused_not_taken_as_not_given(tmp_path, capsys):
    from test_cli_pipeline import one_line_error, run

    for args in (["models", "info", ""], ["simulate", "x.mat", "-o", tmp_path / "o", "--key", ""],
                 ["reconstruct", "x.mat", "--mask", "m.mat", "-o", tmp_path / "o", "--mask-key="],
                 ["reconstruct", "x.mat", "--mask", "m.mat", "-o", tmp_path / "o", "--model", ""]):
        code, out, err = run(args, capsys)
        line = one_line_error(err)
        assert code == 2 and out == "" and "empty" in line and "path" not in line, (args, line)
    assert not (tmp_path / "o").exists()
