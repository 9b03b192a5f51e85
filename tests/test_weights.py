"""Model folders: the format on disk, strict loading with a hash check, the search path, `hsra models`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import hsra_cli
from hsra_cli import weights as W
from hsra_cli.cli import main
from hsra_cli.errors import OutputExistsError, UsageError, WeightsError
from hsra_cli.registry import create_model

CARD = {
    "training": {"data": "KAIST scenes 1-4", "steps": 1200, "wall_time_s": 2400.0, "hardware": "2 CPU cores"},
    "validation": {"data": "KAIST", "scenes": ["scene05"], "psnr_field": 31.25, "ssim_field": 0.912,
                   "psnr_float": 31.3, "ssim_float": 0.913},
    "physics": {"bands": 28, "dispersion_step": 2, "dispersion_axis": "width"},
}


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty $HSRA_MODELS_DIR, and nothing else on the search path (the repository's models/ may hold
    real weights)."""
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("HSRA_MODELS_DIR", str(root))
    monkeypatch.setattr(W, "models_search_path", lambda: [root])
    return root


def saved(root: Path, name: str = "hsra-s", **kwargs):
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    folder = W.save_model_folder(model, root / name, card=CARD)
    return model, folder


def run_both(model, other):
    torch.manual_seed(1)
    measurement, mask = model.example_inputs(32, 48)
    with torch.no_grad():
        return model.eval()(measurement, mask), other.eval()(measurement, mask)


def test_search_path_is_the_environment_then_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("HSRA_MODELS_DIR", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    package_models = Path(hsra_cli.__file__).resolve().parent / "models"
    assert W.models_search_path() == [tmp_path / "a", tmp_path / "b", package_models]
    monkeypatch.delenv("HSRA_MODELS_DIR")
    assert W.models_search_path() == [package_models]


def test_model_folders_are_listed_by_name_in_search_order(monkeypatch, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for root, names in ((first, ["hsra-s.kaist", "hsra-s"]), (second, ["hsra-s", "not-a-model"])):
        for name in names:
            (root / name).mkdir(parents=True)
            if name != "not-a-model":
                (root / name / "config.json").write_text("{}")
    monkeypatch.setattr(W, "models_search_path", lambda: [first, tmp_path / "missing", second])
    assert W.model_folders() == [first / "hsra-s", first / "hsra-s.kaist", second / "hsra-s"]
    assert W.installed_models() == {"hsra-s": first / "hsra-s", "hsra-s.kaist": first / "hsra-s.kaist"}
    assert W.find_model_folder("hsra-s.kaist") == first / "hsra-s.kaist"  # a folder name as given
    assert W.find_model_folder("s") == first / "hsra-s"  # an alias: its canonical name; the first root wins


def test_folder_holds_safetensors_config_and_card(models_dir):
    model, folder = saved(models_dir)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors.keys() == model.state_dict().keys()
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors.values())
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "hsra-s"
    assert config["arch_config"] == model.config.to_dict()
    assert config["sha256"] == W.sha256_of(folder / "model.safetensors")
    assert config["hsra_version"] == hsra_cli.__version__
    physics = config["physics"]
    assert (physics["bands"], physics["dispersion_step"], physics["dispersion_axis"]) == (28, 2, "width")
    assert len(physics["wavelengths_nm"]) == 28 and physics["wavelengths_nm"][0] == 453.5
    assert physics["input_normalisation"].startswith("measurement·2/bands inside the network")
    assert config["training"]["steps"] == 1200 and config["validation"]["psnr_field"] == 31.25
    card = (folder / "README.md").read_text()
    for text in ("# hsra-s", "## Physics it was trained for", "KAIST scenes 1-4", "1200", "40 min", "2 CPU cores",
                 "PSNR 31.25 dB, SSIM 0.9120", "## How to use", "## Limits", config["sha256"]):
        assert text in card, text
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


def test_round_trip_gives_identical_outputs(models_dir):
    model, folder = saved(models_dir, "hsra-dum-3stg")
    loaded, config = W.load_model(folder)
    assert config["folder"] == str(folder) and config["sha256"] == W.sha256_of(folder / "model.safetensors")
    assert not loaded.training
    expected, got = run_both(model, loaded)
    assert torch.equal(expected, got)
    # by name (or alias), found on the search path
    by_alias, _ = W.load_pretrained("dum3")
    assert torch.equal(run_both(model, by_alias)[1], expected)


def test_physics_and_architecture_come_back_from_config(models_dir):
    model = create_model("hsra-s", axis="height", bands=24, n2=2)
    with pytest.raises(UsageError, match="the card says bands=28 but the model was built with 24"):
        W.save_model_folder(model, models_dir / "hsra-s", card=CARD)
    assert not (models_dir / "hsra-s").exists()
    card = {**CARD, "physics": {"bands": 24, "wavelengths_nm": list(range(500, 524))}}
    folder = W.save_model_folder(model, models_dir / "hsra-s", card=card)
    loaded, config = W.load_model(folder)
    assert (loaded.bands, loaded.step, loaded.axis, loaded.config.n2) == (24, 2, "height", 2)
    assert config["physics"]["wavelengths_nm"][0] == 500.0  # the training data's wavelengths are kept


def test_existing_folder_is_not_replaced_without_overwrite(models_dir):
    model, folder = saved(models_dir)
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(OutputExistsError):
        W.save_model_folder(model, folder, card=CARD)
    assert (folder / "model.safetensors").read_bytes() == before
    torch.nn.init.zeros_(model.fusion.weight)
    W.save_model_folder(model, folder, card=CARD, overwrite=True)
    assert (folder / "model.safetensors").read_bytes() != before
    W.load_model(folder)  # the new hash was recorded with the new file


def test_tampered_weights_are_refused(models_dir):
    _, folder = saved(models_dir)
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["fusion.bias"] = tensors["fusion.bias"] + 1
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="corrupt or was replaced"):
        W.load_model(folder)


def test_a_wrong_key_is_named(models_dir, tmp_path):
    model, _ = saved(models_dir)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["prior.embedd.weight"] = tensors.pop("prior.embed.weight")
    path = tmp_path / "renamed.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"missing key\(s\), e\.g\. prior\.embed\.weight.*unexpected key\(s\), e\.g\. prior\.embedd\.weight"):
        W.load_model("hsra-s", weights=path)


def test_a_wrong_shape_is_named_with_both_shapes(models_dir, tmp_path):
    model, _ = saved(models_dir)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["prior.map.bias"] = torch.zeros(24)
    path = tmp_path / "shape.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"prior\.map\.bias: file \[24\], model \[28\]"):
        W.load_model("hsra-s", weights=path)


def test_other_weights_load_against_the_architecture_with_their_own_hash(models_dir, tmp_path):
    model, _ = saved(models_dir)
    torch.manual_seed(5)
    other = create_model("hsra-s")
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    loaded, config = W.load_pretrained("s", weights=path)
    assert config["sha256"] == W.sha256_of(path) != config["recorded_sha256"]
    assert torch.equal(*run_both(other, loaded))


def test_pickled_checkpoints_are_never_loaded(models_dir, tmp_path):
    saved(models_dir)
    path = tmp_path / "model.pth"
    path.write_bytes(b"not even a pickle")
    with pytest.raises(WeightsError, match="only .safetensors weights are accepted; pickled checkpoints are never loaded"):
        W.load_pretrained("hsra-s", weights=path)


def test_a_file_that_is_not_safetensors_is_a_clear_error(models_dir, tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a readable .safetensors file"):
        W.load_model("hsra-s", weights=path)


def test_missing_weights_say_how_to_get_them(models_dir):
    with pytest.raises(WeightsError) as error:
        W.load_pretrained("s")
    assert str(error.value) == (
        "no weights installed for hsra-s: train them with `hsra train --model hsra-s ...`, or put a model folder "
        "(config.json, model.safetensors, README.md) under $HSRA_MODELS_DIR/hsra-s, or pass --weights FILE.safetensors"
    )
    assert W.find_model_folder("hsra-s") is None and W.installed_models() == {}


def test_installed_models_are_found_by_canonical_folder_name(models_dir):
    _, folder = saved(models_dir)
    (models_dir / "not-a-model").mkdir()
    assert W.installed_models() == {"hsra-s": folder}
    assert W.find_model_folder("S") == folder


def test_hsra_models_lists_weights_and_accuracy(models_dir, capsys):
    saved(models_dir)
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["hsra-s"]["weights_installed"] is True
    assert (rows["hsra-s"]["psnr_db"], rows["hsra-s"]["ssim"]) == (31.25, 0.912)
    assert rows["hsra-s"]["gflops"] == pytest.approx(9.04, abs=0.01)
    assert rows["hsra-m"]["weights_installed"] is False and rows["gap-tv"]["needs_weights"] is False
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "hsra-dum-4stg" in table and "31.25" in table


def test_hsra_models_shows_the_default_refined_accuracy_beside_the_network_alone(models_dir, capsys):
    card = {"validation": {"data": "scenes.npz:4", "psnr_field": 26.05, "ssim_field": 0.744,
                           "psnr_field_refined": 26.58, "ssim_field_refined": 0.795, "refine": 5}}
    torch.manual_seed(0)
    W.save_model_folder(create_model("hsra-s"), models_dir / "hsra-s", card=card)
    assert main(["models", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["hsra-s"]
    assert (row["psnr_default_db"], row["ssim_default"]) == (26.58, 0.795) and row["psnr_db"] == 26.05
    assert main(["models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hsra-s "))
    assert line.index("26.58/0.795") < line.index("26.05")  # the default first, then the network alone


def test_a_card_says_when_its_refined_number_used_an_older_refinement_default():
    from hsra_cli.solvers.gap_tv import (DEFAULT_REFINE, REFINE_CORRECTION_TV_WEIGHT, REFINE_FINAL_TV_WEIGHT,
                                         REFINE_TV_WEIGHT, refine_card_fields)

    block = {"data": "scenes.npz:4", "psnr_field": 26.05, "psnr_field_refined": 26.58}
    current = W.render_card({"validation": {**block, **refine_card_fields()}})
    assert f"with the {DEFAULT_REFINE} refinement iterations `hsra reconstruct` adds by default (`--refine`): " \
        "PSNR 26.58" in current
    today = (f"today's default is {DEFAULT_REFINE} accelerated iterations, TV weight {REFINE_CORRECTION_TV_WEIGHT:g} "
             f"on the correction and {REFINE_TV_WEIGHT:g} on the cube, then a final TV at {REFINE_FINAL_TV_WEIGHT:g}")
    old = W.render_card({"validation": {**block, "refine": 5}})  # exported before the weight was recorded
    assert "with the refinement `hsra reconstruct` added by default when this was measured (5 iterations at TV " \
        "weight 0.01; " in old and today in old
    # exported before refinement denoised the correction: TV on the cube alone, recorded weight
    plain = W.render_card({"validation": {**block, "refine": 10, "refine_tv_weight": 0.003}})
    assert "(10 iterations at TV weight 0.003; " in plain and today in plain
    assert "adds by default" not in old + plain


def test_hsra_models_info_prints_the_card_or_how_to_get_weights(models_dir, capsys):
    _, folder = saved(models_dir)
    assert main(["models", "info", "s"]) == 0
    assert capsys.readouterr().out.strip() == (folder / "README.md").read_text().strip()
    assert main(["models", "info", "hsra-l"]) == 0
    out = capsys.readouterr().out
    assert '"n2": 5' in out and "no weights installed for hsra-l" in out
    assert main(["models", "info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["models", "info", "hsra-s.nope"]) == 1  # a tag names weights: none installed is an error
    err = capsys.readouterr().err
    assert "no weights installed for hsra-s.nope" in err and err.count("\n") == 1


def test_hsra_models_info_auto_explains_the_default_of_reconstruct(capsys, monkeypatch):
    assert main(["models", "info", "auto"]) == 0
    out = capsys.readouterr().out
    assert "hsra-dum-2stg" in out and "gap-tv" in out and "Here, without geometry options:" in out
    monkeypatch.setattr(W, "find_model_folder", lambda name: None)  # an install without the default weights
    assert main(["models", "info", "auto", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["chosen_without_geometry_options"] == "gap-tv" and "no weights" in row["reason"]


def test_cards_name_their_data_without_the_training_machines_paths(models_dir, capsys):
    card = {
        "training": {"data": "../shared/data/kaist/kaist_scenes01-05_truth_uint8.npz:0-3 (4 scenes) + /abs/cubes/x.h5"},
        "validation": {"data": "../shared/data/kaist/kaist_scenes01-05_truth_uint8.npz:4", "psnr_field": 26.0},
    }
    torch.manual_seed(0)
    folder = W.save_model_folder(create_model("hsra-s"), models_dir / "hsra-s", card=card)
    text = (folder / "README.md").read_text()
    assert "kaist_scenes01-05_truth_uint8.npz:0-3 (4 scenes) + x.h5" in text
    assert "../" not in text and "/abs/" not in text
    assert "## License" in text and "not stated" in text  # nothing made up for a card that states none
    assert "## Citation" in text and "@misc{hsra_poster" in text
    assert main(["models", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["hsra-s"]
    assert row["accuracy_on"] == "kaist_scenes01-05_truth_uint8.npz:4" and row["citations"][0].startswith("@misc")


def test_a_card_cites_its_datasets_by_key_or_in_full():
    config = {"name": "hsra-s", "license": {"weights": "CC-BY-4.0"},
              "datasets": [{"name": "KAIST", "use": "training", "files": "../d/k.npz", "citation": ["kaist", "tsa-net"]},
                           {"name": "own", "citation": "@misc{own, title = {Our scenes}}"}]}
    assert W.card_citations(config) == [W.CITATIONS["hsra"], W.CITATIONS["kaist"], W.CITATIONS["tsa-net"],
                                        "@misc{own, title = {Our scenes}}"]
    assert W.card_sources(config)[0]["files"] == "k.npz"
    assert W.card_license(config) == "weights: CC-BY-4.0"
    text = W.render_card(config)
    assert "- KAIST — training (k.npz)" in text and "Choi, Inchang" in text and "Meng, Ziyi" in text


@pytest.mark.parametrize("tag", ["any", "kaist"])
def test_the_shipped_card_cites_the_poster_kaist_and_tsa_net_and_shows_no_local_paths(capsys, monkeypatch, tag):
    folder = W.PACKAGE_MODELS / f"hsra-s.{tag}"
    if not (folder / "config.json").is_file():
        pytest.skip(f"the shipped hsra-s.{tag} weights are not in this checkout")
    monkeypatch.delenv("HSRA_MODELS_DIR", raising=False)
    config = json.loads((folder / "config.json").read_text())
    parameters = sum(t.numel() for t in load_file(str(folder / "model.safetensors")).values())
    assert (folder / "README.md").read_text() == W.render_card(config, parameters=parameters)  # card = its config
    assert main(["models", "info", f"hsra-s.{tag}"]) == 0
    card = capsys.readouterr().out
    for text in ("@misc{hsra_poster", "@article{choi2017kaist", "@inproceedings{meng2020tsanet", "MIT", "KAIST"):
        assert text in card
    assert "shared/" not in card and "../" not in card


def test_a_damaged_config_is_a_weights_error(models_dir):
    _, folder = saved(models_dir)
    config = json.loads((folder / "config.json").read_text())
    config["arch_config"]["n_future_blocks"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="cannot build hsra-s from its config.json: .*n_future_blocks"):
        W.load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not readable JSON"):
        W.load_model(folder)


def test_nothing_is_ever_unpickled():
    source = Path(W.__file__).read_text()
    assert "torch.load" not in source and "pickle" not in source.replace("pickled checkpoints", "")


# --------------------------------------------------------------------------------------------------
# tags: several weights of one architecture (timm's NAME.TAG convention)
def test_tags_name_weights_and_the_bare_name_loads_the_default_tag(models_dir, capsys):
    from hsra_cli.registry import default_tag, split_tag

    assert split_tag("s.KAIST") == ("hsra-s", "kaist") and split_tag("hsra-s") == ("hsra-s", None)
    assert split_tag("hsra-s-mkptm-r0.5") == ("hsra-s-mkptm-r0.5", None)  # a dot inside a registered name
    with pytest.raises(UsageError, match="solver without weights"):
        split_tag("gap-tv.any")
    assert default_tag("hsra-s") == "any"
    torch.manual_seed(0)
    any_model = create_model("hsra-s")
    W.save_model_folder(any_model, models_dir / "hsra-s.any", card=CARD)
    torch.manual_seed(1)
    kaist_model = create_model("hsra-s")
    W.save_model_folder(kaist_model, models_dir / "hsra-s.kaist", card=CARD)
    for name, expected in (("hsra-s", any_model), ("s", any_model), ("hsra-s.any", any_model),
                           ("s.kaist", kaist_model)):
        loaded, config = W.load_pretrained(name)
        a, b = run_both(expected, loaded)
        assert torch.equal(a, b), name
    assert W.find_model_folder("hsra-s") == models_dir / "hsra-s.any"
    # an untagged folder (what `hsra train` exports) wins for the bare name in the same search folder
    saved(models_dir, "hsra-s")
    assert W.find_model_folder("hsra-s") == models_dir / "hsra-s"
    assert W.find_model_folder("hsra-s.kaist") == models_dir / "hsra-s.kaist"
    with pytest.raises(WeightsError, match=r"no weights installed for hsra-s.other .*installed tags: hsra-s.any, hsra-s.kaist"):
        W.load_pretrained("hsra-s.other")
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["hsra-s.any"]["weights_installed"] and rows["hsra-s.kaist"]["weights_folder"].endswith("hsra-s.kaist")
    assert main(["models", "info", "s.kaist"]) == 0
    assert "(from " in capsys.readouterr().err


def test_reconstruct_records_the_tagged_name_of_its_weights(models_dir):
    import numpy as np

    from hsra_cli.reconstruct import Reconstructor

    torch.manual_seed(0)
    W.save_model_folder(create_model("hsra-s"), models_dir / "hsra-s.kaist", card=CARD)
    rng = np.random.default_rng(0)
    mask = rng.random((32, 32), dtype=np.float32)
    measurement = rng.random((32, 32 + 54), dtype=np.float32)
    result = Reconstructor("s.kaist", refine=0).reconstruct(measurement, mask, normalize="none")
    assert result.record["model"] == "hsra-s.kaist"


def test_own_weights_load_as_a_folder_a_file_beside_its_config_or_a_bare_file_for_the_optics_named(tmp_path, capsys):
    """Weights `hsra train` exported for 31 bands: --weights takes the folder or its file (the config.json beside it
    builds the network), a bare copy of the file with --bands 31; another architecture's folder is named."""
    torch.manual_seed(0)
    model = create_model("hsra-s", bands=31)
    folder = W.save_model_folder(model, tmp_path / "runs" / "hsra-s", card={"training": {"data": "c31/", "steps": 5}})
    assert "wavelengths_nm" not in json.loads((folder / "config.json").read_text())["physics"]  # none invented
    assert "bands: 31 (wavelengths not recorded)" in (folder / "README.md").read_text()
    assert "--weights path/to/this/folder" in (folder / "README.md").read_text()
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes((folder / "model.safetensors").read_bytes())
    for weights, physics in ((folder, None), (folder / "model.safetensors", None), (bare, {"bands": 31})):
        loaded, config = W.load_pretrained("hsra-s", weights=weights, physics=physics)
        assert loaded.bands == 31
        mine, theirs = run_both(model, loaded)
        assert torch.equal(mine, theirs)
    with pytest.raises(WeightsError, match=r"fusion.weight.*fit a 31-band hsra-s: .*\(--bands 31\)"):
        W.load_pretrained("hsra-s", weights=bare)  # a bare file without its optics: the shapes name the band count
    other = tmp_path / "other.safetensors"  # another architecture's bare file fits no band count: no hint
    torch.manual_seed(0)
    W.save_model_folder(create_model("hsra-dum-2stg"), tmp_path / "d2", card={})
    other.write_bytes((tmp_path / "d2" / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError) as info:
        W.load_pretrained("hsra-s", weights=other)
    assert "does not fit the hsra-s architecture" in str(info.value) and "--bands" not in str(info.value)
    with pytest.raises(WeightsError, match="holds hsra-s weights, not hsra-dum-2stg; pass --model hsra-s"):
        W.load_pretrained("hsra-dum-2stg", weights=folder)
