"""`hsra evaluate`: pairing, output formats, files, and one-line errors with the right exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hsra_cli import metrics
from hsra_cli.cli import main

SHAPE = (24, 20, 4)  # H × W × C: big enough for SSIM (11) and LPSNR(16)


def make_pair(folder: Path, name: str, seed: int, noise: float = 0.05) -> tuple[Path, Path, dict]:
    """Write a truth and a noisy prediction as .npy (H×W×C float32); return their paths and the metrics."""
    rng = np.random.default_rng(seed)
    truth = rng.random(SHAPE).astype(np.float32)
    pred = np.clip(truth + noise * rng.standard_normal(SHAPE), 0, 1).astype(np.float32)
    pred_path, truth_path = folder / f"{name}.npy", folder / f"{name}_gt.npy"
    np.save(pred_path, pred)
    np.save(truth_path, truth)
    return pred_path, truth_path, metrics.evaluate_cube(pred, truth)


@pytest.fixture
def two_scenes(tmp_path):
    return [make_pair(tmp_path, "scene1", 1), make_pair(tmp_path, "scene2", 2, noise=0.1)]


def evaluate_args(scenes, *extra):
    args = ["evaluate", *(str(pred) for pred, _, _ in scenes)]
    for _, truth, _ in scenes:
        args += ["--truth", str(truth)]
    return [*args, *extra]


def assert_one_line_error(stderr: str) -> None:
    assert stderr.startswith("hsra: error: ")
    assert stderr.count("\n") == 1
    assert "Traceback" not in stderr


def test_default_output_is_a_table_naming_the_convention_and_units(two_scenes, capsys):
    assert main(evaluate_args(two_scenes)) == 0
    out = capsys.readouterr().out
    assert "field convention" in out
    assert "dB" in out and "degrees" in out
    assert "scene1" in out and "scene2" in out and "mean" in out
    assert f"{two_scenes[0][2]['psnr']:.2f}" in out
    assert f"{two_scenes[1][2]['ssim']:.4f}" in out


def test_json_holds_every_scene_with_all_metrics_and_their_mean(two_scenes, capsys):
    assert main(evaluate_args(two_scenes, "--json", "--convention", "float")) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout holds the JSON and nothing else
    assert report["convention"] == "float"
    assert [scene["name"] for scene in report["scenes"]] == ["scene1", "scene2"]
    for scene, (pred_path, truth_path, _) in zip(report["scenes"], two_scenes):
        assert set(scene) == {"name", "method", "pred", "truth", *metrics.METRIC_KEYS}
        assert scene["pred"] == str(pred_path) and scene["truth"] == str(truth_path)
        expected = metrics.evaluate_cube(np.load(pred_path), np.load(truth_path), convention="float")
        for key in metrics.METRIC_KEYS:
            assert scene[key] == pytest.approx(expected[key])
    assert tuple(report["mean"]) == metrics.METRIC_KEYS
    for key in metrics.METRIC_KEYS:
        assert report["mean"][key] == pytest.approx(np.mean([s[key] for s in report["scenes"]]))
    # one method (the folder's): "mean" as ever, and the same mean under mean_by_method
    assert report["mean_by_method"] == {report["scenes"][0]["method"]: report["mean"]}
    assert report["scenes"][0]["method"] == two_scenes[0][0].parent.name
    assert report["failed"] == []
    assert "float convention" in captured.err


def test_csv_has_a_header_one_row_per_scene_and_a_mean_row(two_scenes, capsys):
    assert main(evaluate_args(two_scenes, "--csv")) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["name", "psnr", "ssim", "sam", "ergas", "lpsnr8", "lpsnr16", "method"]
    assert [row[0] for row in rows[1:]] == ["scene1", "scene2", "mean"]
    assert len({row[-1] for row in rows[1:]}) == 1  # one method, on every row and the mean
    assert float(rows[1][1]) == pytest.approx(two_scenes[0][2]["psnr"], abs=1e-5)
    assert float(rows[3][1]) == pytest.approx((two_scenes[0][2]["psnr"] + two_scenes[1][2]["psnr"]) / 2, abs=1e-5)


def test_output_file_gets_the_report_and_is_never_overwritten_silently(two_scenes, tmp_path, capsys):
    target = tmp_path / "metrics.json"
    assert main(evaluate_args(two_scenes, "-o", str(target))) == 0  # format from the suffix
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(target.read_text())["convention"] == "field"

    target = tmp_path / "metrics.csv"
    target.write_text("keep me")
    assert main(evaluate_args(two_scenes, "--csv", "-o", str(target))) == 2
    assert_one_line_error(capsys.readouterr().err)
    assert target.read_text() == "keep me"

    assert main(evaluate_args(two_scenes, "--csv", "-o", str(target), "--overwrite")) == 0
    assert target.read_text().startswith("name,psnr,")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_uint8_files_are_scaled_to_unit_range(tmp_path, capsys):
    pred_path, truth_path, _ = make_pair(tmp_path, "scene", 3)
    truth_u8 = np.rint(np.load(truth_path) * 255).astype(np.uint8)
    np.save(truth_path, truth_u8)
    assert main(["evaluate", str(pred_path), "--truth", str(truth_path), "--json"]) == 0
    psnr = json.loads(capsys.readouterr().out)["scenes"][0]["psnr"]
    assert psnr == pytest.approx(metrics.psnr(np.load(pred_path), truth_u8 / 255.0))


def test_a_prediction_without_a_truth_of_its_name_fails_alone_and_the_others_are_scored(two_scenes, capsys):
    (pred, truth, expected), (pred2, _, _) = two_scenes
    assert main(["evaluate", str(pred), str(pred2), "--truth", str(truth), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [scene["name"] for scene in report["scenes"]] == ["scene1"]
    assert report["scenes"][0]["psnr"] == pytest.approx(expected["psnr"])
    assert "no truth is named like 'scene2'" in captured.err and "--pair-by-position" in captured.err
    assert "1 scored, 1 failed" in captured.err


def test_pair_by_position_with_a_count_mismatch_is_a_usage_error(two_scenes, capsys):
    (pred, truth, _), (pred2, truth2, _) = two_scenes
    third = pred.with_name("scene3.npy")
    third.write_bytes(pred.read_bytes())
    assert main(["evaluate", str(pred), str(pred2), str(third), "--truth", str(truth), "--truth", str(truth2),
                 "--pair-by-position"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "3 prediction(s) and 2 truth(s)" in err


def test_json_and_csv_together_is_a_usage_error(two_scenes, capsys):
    assert main(evaluate_args(two_scenes, "--json", "--csv")) == 2
    assert_one_line_error(capsys.readouterr().err)


def test_shape_mismatch_is_a_one_line_data_error_naming_both_shapes(tmp_path, capsys):
    pred_path, truth_path, _ = make_pair(tmp_path, "scene", 4)
    np.save(truth_path, np.zeros((24, 22, 4), dtype=np.float32))
    assert main(["evaluate", str(pred_path), "--truth", str(truth_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err)
    assert "(24, 20, 4)" in captured.err and "(24, 22, 4)" in captured.err


def test_missing_prediction_is_a_one_line_data_error(tmp_path, capsys):
    _, truth_path, _ = make_pair(tmp_path, "scene", 5)
    assert main(["evaluate", str(tmp_path / "absent.npy"), "--truth", str(truth_path)]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "absent.npy" in err


def test_executable_reports_a_shape_mismatch_without_traceback(tmp_path):
    pred_path, truth_path, _ = make_pair(tmp_path, "scene", 6)
    np.save(truth_path, np.zeros((20, 20, 4), dtype=np.float32))
    hsra = Path(sys.executable).with_name("hsra")
    if not hsra.exists():
        pytest.skip("the hsra console script is not installed next to this Python")
    result = subprocess.run(
        [str(hsra), "evaluate", str(pred_path), "--truth", str(truth_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert_one_line_error(result.stderr)
    assert "(24, 20, 4)" in result.stderr and "(20, 20, 4)" in result.stderr
    assert result.stdout == ""


def test_help_shows_examples(capsys):
    assert main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and "hsra evaluate" in out and "--truth" in out


# --- one input syntax, pairing by name (issue 10, item 10) ----------------------------------------------------


def _scene_folders(tmp_path, names, truth_suffix=""):
    """Predictions in pred/, truths in gt/ (their names ending in ``truth_suffix``); returns expected metrics."""
    preds, truths = tmp_path / "pred", tmp_path / "gt"
    preds.mkdir()
    truths.mkdir()
    expected = {}
    for seed, name in enumerate(names):
        pred_path, truth_path, scores = make_pair(tmp_path, name, seed + 10)
        pred_path.rename(preds / f"{name}.npy")
        truth_path.rename(truths / f"{name}{truth_suffix}.npy")
        expected[name] = scores
    return preds, truths, expected


def test_folders_pair_predictions_with_truths_by_name_not_by_order(tmp_path, capsys):
    preds, truths, expected = _scene_folders(tmp_path, ["b_scene", "a_scene", "c_scene"], truth_suffix="_gt")
    # Listed in another order than the predictions' folder sorts them: names decide.
    args = ["evaluate", preds, "--truth", truths / "c_scene_gt.npy", "--truth", truths / "b_scene_gt.npy",
            "--truth", truths / "a_scene_gt.npy", "--json"]
    assert main([str(a) for a in args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["scenes"]] == ["a_scene", "b_scene", "c_scene"]
    for scene in report["scenes"]:
        assert scene["truth"].endswith(f"{scene['name']}_gt.npy")
        assert scene["psnr"] == pytest.approx(expected[scene["name"]]["psnr"])


def test_predictions_named_after_their_method_pair_with_the_scene_truth(tmp_path, capsys):
    preds, truths, expected = _scene_folders(tmp_path, ["scene01", "scene02"])
    for path in list(preds.iterdir()):
        path.rename(preds / f"{path.stem}_hsra-s.npy")
    assert main(["evaluate", str(preds), "--truth", str(truths), "--json"]) == 0
    scenes = json.loads(capsys.readouterr().out)["scenes"]
    assert [(s["name"], Path(s["truth"]).name) for s in scenes] == [
        ("scene01_hsra-s", "scene01.npy"), ("scene02_hsra-s", "scene02.npy")]


def test_mst_style_stacks_in_one_file_are_scored_scene_by_scene(tmp_path, capsys):
    import scipy.io

    rng = np.random.default_rng(3)
    truth = rng.random((3, *SHAPE)).astype(np.float32)
    pred = np.clip(truth + 0.05 * rng.standard_normal(truth.shape), 0, 1).astype(np.float32)
    scipy.io.savemat(tmp_path / "Test_result.mat", {"pred": pred, "truth": truth})
    assert main(["evaluate", str(tmp_path / "Test_result.mat"), "--key", "pred", "--truth",
                 str(tmp_path / "Test_result.mat"), "--truth-key", "truth", "--json"]) == 0
    scenes = json.loads(capsys.readouterr().out)["scenes"]
    assert [s["name"] for s in scenes] == ["Test_result_0", "Test_result_1", "Test_result_2"]  # as outputs are named
    for index, scene in enumerate(scenes):
        assert scene["psnr"] == pytest.approx(metrics.evaluate_cube(pred[index], truth[index])["psnr"])


def test_a_stack_selector_picks_truths_and_position_pairs_differently_named_files(tmp_path, capsys):
    rng = np.random.default_rng(4)
    truth = rng.random((4, *SHAPE)).astype(np.float32)
    np.savez(tmp_path / "kaist_truth.npz", truth=(truth * 255).round().astype(np.uint8))
    preds = tmp_path / "recon"
    preds.mkdir()
    for index in (1, 2):
        np.save(preds / f"scene{index + 1:02d}.npy", truth[index])
    # By name nothing pairs (scene02 vs kaist_truth:1): each prediction fails, naming the way out.
    assert main(["evaluate", str(preds), "--truth", str(tmp_path / "kaist_truth.npz:1-2")]) == 1
    assert capsys.readouterr().err.count("--pair-by-position") == 2
    assert main(["evaluate", str(preds), "--truth", str(tmp_path / "kaist_truth.npz:1-2"), "--pair-by-position",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["truth"]) for s in report["scenes"]] == [
        ("scene02", f"{tmp_path / 'kaist_truth.npz'}:1"), ("scene03", f"{tmp_path / 'kaist_truth.npz'}:2")]
    assert all(s["psnr"] > 40 for s in report["scenes"])  # the same cubes, up to uint8 rounding


def test_a_selector_beyond_the_stack_names_its_size(tmp_path, capsys):
    np.save(tmp_path / "stack.npy", np.random.default_rng(5).random((2, *SHAPE)).astype(np.float32))
    np.save(tmp_path / "pred.npy", np.random.default_rng(6).random(SHAPE).astype(np.float32))
    assert main(["evaluate", str(tmp_path / "pred.npy"), "--truth", str(tmp_path / "stack.npy:5")]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "holds 2 scenes" in err


def test_one_scene_from_several_methods_is_named_by_method(tmp_path, capsys):
    import json

    import numpy as np

    from hsra_cli.cli import main

    rng = np.random.default_rng(0)
    truth = rng.random((16, 16, 28), dtype=np.float32)
    np.save(tmp_path / "scene.npy", truth)
    for method, noise in (("net", 0.01), ("solver", 0.1)):
        folder = tmp_path / method
        folder.mkdir()
        np.save(folder / "scene.npy", np.clip(truth + noise * rng.standard_normal(truth.shape), 0, 1).astype(np.float32))
    (tmp_path / "net" / "scene.json").write_text(json.dumps({"model": "hsra-s.any"}))  # a reconstruct record
    assert main(["evaluate", str(tmp_path / "net" / "scene.npy"), str(tmp_path / "solver" / "scene.npy"),
                 "--truth", str(tmp_path / "scene.npy"), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["scenes"]}
    assert set(rows) == {"scene (hsra-s.any)", "scene (solver)"}  # the record's model, else the folder
    assert rows["scene (hsra-s.any)"]["psnr"] > rows["scene (solver)"]["psnr"]


def test_json_and_csv_never_average_across_methods(tmp_path, capsys):
    """With rows of several methods, each output gives each method's own mean, never one across them (the
    table already did; --json and --csv averaged the methods together)."""
    import csv
    import io
    import json

    import numpy as np

    from hsra_cli.cli import main

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        truth = rng.random((16, 16, 28), dtype=np.float32)
        np.save(tmp_path / f"{name}.npy", truth)
        for method, noise in (("net", 0.01), ("solver", 0.1)):
            (tmp_path / method).mkdir(exist_ok=True)
            np.save(tmp_path / method / f"{name}.npy",
                    np.clip(truth + noise * rng.standard_normal(truth.shape), 0, 1).astype(np.float32))
    args = ["evaluate", str(tmp_path / "net"), str(tmp_path / "solver"), "--truth", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "mean" not in report and set(report["mean_by_method"]) == {"net", "solver"}
    for method in ("net", "solver"):
        own = [s["psnr"] for s in report["scenes"] if s["method"] == method]
        assert len(own) == 2 and report["mean_by_method"][method]["psnr"] == pytest.approx(np.mean(own))
    assert main([*args, "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    labels = [row[0] for row in rows[1:]]
    assert "mean" not in labels and labels[-2:] == ["mean (net)", "mean (solver)"]
    assert float(rows[-2][1]) == pytest.approx(report["mean_by_method"]["net"]["psnr"], abs=1e-5)


def test_a_stack_scores_against_itself_after_simulate_and_reconstruct(tmp_path, capsys):
    """stack.npz:0-1 → simulate (stack_0.mat, stack_1.mat) → reconstruct → evaluate --truth stack.npz:0-1 pairs each
    output with its scene by name (it used to need --pair-by-position)."""
    import json

    import numpy as np

    from hsra_cli.cli import main
    from test_cli_pipeline import smooth_cube

    np.savez(tmp_path / "stack.npz", cube=np.stack([smooth_cube(16, 16, seed=0), smooth_cube(16, 16, seed=1)]))
    stack = f"{tmp_path / 'stack.npz'}:0-1"
    assert main(["simulate", stack, "-o", str(tmp_path / "sim"), "-q"]) == 0
    assert main(["reconstruct", str(tmp_path / "sim"), "--mask", str(tmp_path / "sim" / "mask.mat"), "--model",
                 "gap-tv", "-o", str(tmp_path / "rec"), "-q", "--no-previews"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "rec"), "--truth", stack, "--json"]) == 0
    scenes = json.loads(capsys.readouterr().out)["scenes"]
    assert [(Path(s["pred"]).name, s["truth"].rsplit(":", 1)[1]) for s in scenes] == [("stack_0.mat", "0"),
                                                                                     ("stack_1.mat", "1")]


def test_methods_in_one_folder_get_their_own_means(tmp_path, capsys):
    """README's one-folder comparison (--name '{stem}_{model}'): scene_net and scene_solver pair with one truth,
    so each method gets its own mean (it used to be one mean across both)."""
    import json

    import numpy as np

    from hsra_cli.cli import main

    rng = np.random.default_rng(1)
    (tmp_path / "cmp").mkdir()
    for name in ("a", "b"):
        truth = rng.random((16, 16, 28), dtype=np.float32)
        np.save(tmp_path / f"{name}.npy", truth)
        for method, noise in (("net", 0.01), ("solver", 0.1)):
            np.save(tmp_path / "cmp" / f"{name}_{method}.npy",
                    np.clip(truth + noise * rng.standard_normal(truth.shape), 0, 1).astype(np.float32))
            (tmp_path / "cmp" / f"{name}_{method}.json").write_text(json.dumps({"model": method}))
    assert main(["evaluate", str(tmp_path / "cmp"), "--truth", str(tmp_path / "a.npy"), "--truth",
                 str(tmp_path / "b.npy"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(s["name"] for s in report["scenes"]) == ["a_net", "a_solver", "b_net", "b_solver"]
    assert "mean" not in report and set(report["mean_by_method"]) == {"net", "solver"}
    assert report["mean_by_method"]["net"]["psnr"] > report["mean_by_method"]["solver"]["psnr"] + 5


# --- QA defects: runs told apart, a stable layout, honest means, scales, markup, one line per input ----------


def _noisy(truth: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(truth + noise * rng.standard_normal(truth.shape), 0, 1).astype(np.float32)


def _truth_folder(tmp_path, names=("s1", "s2")) -> dict:
    (tmp_path / "truth").mkdir()
    truths = {}
    for seed, name in enumerate(names):
        truths[name] = np.random.default_rng(seed + 40).random(SHAPE).astype(np.float32)
        np.save(tmp_path / "truth" / f"{name}.npy", truths[name])
    return truths


def test_two_runs_of_one_model_are_told_apart_by_folder_with_a_mean_each(tmp_path, capsys):
    truths = _truth_folder(tmp_path)
    for folder, noise in (("rec_a", 0.01), ("rec_b", 0.1)):
        (tmp_path / folder).mkdir()
        for name, truth in truths.items():
            np.save(tmp_path / folder / f"{name}.npy", _noisy(truth, noise, 1))
            (tmp_path / folder / f"{name}.json").write_text(json.dumps({"model": "hsra-s.any"}))
    args = ["evaluate", str(tmp_path / "rec_a"), str(tmp_path / "rec_b"), "--truth", str(tmp_path / "truth")]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in report["scenes"]]
    assert len(set(names)) == 4 and "s1 (hsra-s.any, rec_a)" in names and "s1 (hsra-s.any, rec_b)" in names
    assert "mean" not in report and set(report["mean_by_method"]) == {"hsra-s.any, rec_a", "hsra-s.any, rec_b"}
    for method in report["mean_by_method"]:
        own = [s["psnr"] for s in report["scenes"] if s["method"] == method]
        assert len(own) == 2 and report["mean_by_method"][method]["psnr"] == pytest.approx(np.mean(own))
    assert report["mean_by_method"]["hsra-s.any, rec_a"]["psnr"] > report["mean_by_method"]["hsra-s.any, rec_b"]["psnr"] + 5
    assert main([*args, "--csv"]) == 0
    labels = [row[0] for row in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert labels[-2:] == ["mean (hsra-s.any, rec_a)", "mean (hsra-s.any, rec_b)"] and len(set(labels)) == 6


def test_one_run_written_as_mat_and_h5_in_one_folder_is_told_apart_by_file_type(tmp_path, capsys):
    from hsra_cli import io as hsra_io

    truths = _truth_folder(tmp_path, ("s1",))
    (tmp_path / "rec").mkdir()
    hsra_io.write_cube(tmp_path / "rec" / "s1.mat", _noisy(truths["s1"], 0.05, 2))
    hsra_io.write_cube(tmp_path / "rec" / "s1.h5", _noisy(truths["s1"], 0.05, 2))
    assert main(["evaluate", str(tmp_path / "rec"), "--truth", str(tmp_path / "truth"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(s["name"] for s in report["scenes"]) == ["s1 (rec, .h5)", "s1 (rec, .mat)"]
    assert sorted(report["mean_by_method"]) == ["rec, .h5", "rec, .mat"]


def test_several_methods_of_one_scene_each_get_a_mean_row_and_json_entry(tmp_path, capsys):
    """README's `hsra evaluate hsra-s/ gap-tv/ --truth truth/` with one scene per folder gave no mean at all."""
    truths = _truth_folder(tmp_path, ("s1",))
    for folder, noise in (("hsra-s", 0.01), ("gap-tv", 0.1)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "s1.npy", _noisy(truths["s1"], noise, 3))
    args = ["evaluate", str(tmp_path / "hsra-s"), str(tmp_path / "gap-tv"), "--truth", str(tmp_path / "truth")]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["mean_by_method"]) == ["hsra-s", "gap-tv"] and "mean" not in report
    assert report["mean_by_method"]["gap-tv"]["psnr"] == pytest.approx(report["scenes"][1]["psnr"])
    assert report["mean_scene_counts"]["hsra-s"] == {key: 1 for key in metrics.METRIC_KEYS}
    assert main([*args, "--csv"]) == 0
    labels = [row[0] for row in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert labels == ["s1 (hsra-s)", "s1 (gap-tv)", "mean (hsra-s)", "mean (gap-tv)"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean (hsra-s)" in out and "mean (gap-tv)" in out


def test_files_of_the_current_folder_against_one_truth_never_get_an_empty_method(tmp_path, capsys, monkeypatch):
    truths = _truth_folder(tmp_path, ("t",))
    monkeypatch.chdir(tmp_path)
    np.save("a.npy", _noisy(truths["t"], 0.01, 4))
    np.save("b.npy", _noisy(truths["t"], 0.1, 5))
    assert main(["evaluate", "a.npy", "b.npy", "--truth", "truth/t.npy", "--pair-by-position", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "" not in report["mean_by_method"] and list(report["mean_by_method"]) == ["a", "b"]
    assert main(["evaluate", "a.npy", "b.npy", "--truth", "truth/t.npy", "--pair-by-position", "--csv"]) == 0
    labels = [row[0] for row in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert labels == ["a", "b", "mean (a)", "mean (b)"]


def test_a_name_ending_after_the_truth_name_is_a_method_of_its_own(tmp_path, capsys):
    """p/scene01 and p/scene01_mst against truth scene01 are two methods, not one mean (p) over both."""
    truths = _truth_folder(tmp_path, ("scene01",))
    (tmp_path / "p").mkdir()
    np.save(tmp_path / "p" / "scene01.npy", _noisy(truths["scene01"], 0.01, 6))
    np.save(tmp_path / "p" / "scene01_mst.npy", _noisy(truths["scene01"], 0.1, 7))
    assert main(["evaluate", str(tmp_path / "p"), "--truth", str(tmp_path / "truth"), "--csv"]) == 0
    labels = [row[0] for row in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert labels == ["scene01 (p)", "scene01_mst", "mean (p)", "mean (mst)"]  # scene01_mst already says mst


def test_a_mean_over_fewer_scenes_than_its_method_has_is_said_and_counted(tmp_path, capsys):
    truths = _truth_folder(tmp_path)
    (tmp_path / "rec").mkdir()
    np.save(tmp_path / "rec" / "s1.npy", _noisy(truths["s1"], 0.05, 8))
    np.save(tmp_path / "rec" / "s2.npy", np.zeros(SHAPE, np.float32))  # SAM undefined: no spectrum has a direction
    assert main(["evaluate", str(tmp_path / "rec"), "--truth", str(tmp_path / "truth"), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["scenes"][1]["sam"] is None
    assert report["mean"]["sam"] == pytest.approx(report["scenes"][0]["sam"])
    assert report["mean_scene_counts"]["rec"]["sam"] == 1 and report["mean_scene_counts"]["rec"]["psnr"] == 2
    assert "SAM is undefined for 1 of 2 scene(s)" in captured.err and "its mean is over 1" in captured.err
    assert "ERGAS is undefined" not in captured.err


def test_a_float_prediction_in_0_255_is_refused_like_such_a_truth(tmp_path, capsys):
    _, truth_path, _ = make_pair(tmp_path, "scene", 9)
    np.save(tmp_path / "scene.npy", np.load(truth_path) * 255)
    assert main(["evaluate", str(tmp_path / "scene.npy"), "--truth", str(truth_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err)
    assert f"the prediction {tmp_path / 'scene.npy'} has values in" in captured.err and "expected [0, 1]" in captured.err
    np.save(tmp_path / "scene.npy", np.load(truth_path) * 1.05)  # a network's overshoot: clipped, scored
    assert main(["evaluate", str(tmp_path / "scene.npy"), "--truth", str(truth_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scenes"][0]["psnr"] > 20


def test_a_truth_out_of_range_is_named_by_its_own_file(tmp_path, capsys):
    pred_path, truth_path, _ = make_pair(tmp_path, "scene", 10)
    np.save(truth_path, np.load(truth_path) * 255)
    other = tmp_path / "other.npy"
    other.write_bytes(pred_path.read_bytes())
    assert main(["evaluate", str(pred_path), str(other), "--truth", str(truth_path), "--pair-by-position"]) == 1
    err = capsys.readouterr().err
    assert f"failed {pred_path}: the truth {truth_path} has values in" in err
    assert err.count("the truth") == 2


def test_markup_in_a_file_name_is_shown_as_it_is(tmp_path, capsys):
    pred_path, truth_path, _ = make_pair(tmp_path, "scene", 11)
    odd = tmp_path / "[bold]b.npy"
    pred_path.rename(odd)
    assert main(["evaluate", str(odd), "--truth", str(truth_path)]) == 0
    assert "[bold]b" in capsys.readouterr().out


def test_json_is_printed_even_when_every_input_fails(tmp_path, capsys):
    _, truth_path, _ = make_pair(tmp_path, "scene", 12)
    assert main(["evaluate", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--truth", str(truth_path),
                 "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["scenes"] == [] and report["mean_by_method"] == {} and "mean" not in report
    assert [f["input"] for f in report["failed"]] == [str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    assert "0 scored, 2 failed" in captured.err


def test_one_file_failing_as_prediction_and_truth_is_one_line(tmp_path, capsys):
    import scipy.io

    cube = np.random.default_rng(13).random(SHAPE).astype(np.float32)
    scipy.io.savemat(tmp_path / "two.mat", {"a": cube, "b": cube})
    assert main(["evaluate", str(tmp_path / "two.mat"), "--truth", str(tmp_path / "two.mat")]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "--key and --truth-key" in err


@pytest.mark.parametrize("flag, name", [("--json", "out.csv"), ("--csv", "out.json"), ("--json", "out.txt")])
def test_an_output_file_suffix_contradicting_the_format_is_refused(two_scenes, tmp_path, capsys, flag, name):
    target = tmp_path / name
    assert main(evaluate_args(two_scenes, flag, "--output-file", str(target))) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert name in err and flag[2:] + "" in err.lower()
    assert not target.exists()


def test_check_output_suffix_accepts_its_suffixes_in_any_case_and_refuses_others():
    from hsra_cli.io import check_output_suffix
    from hsra_cli.errors import UsageError

    check_output_suffix(Path("a/metrics.JSON"), (".json",), "JSON")
    with pytest.raises(UsageError, match=r"'metrics' has no suffix.*\.json"):
        check_output_suffix(Path("metrics"), (".json",), "JSON")
    with pytest.raises(UsageError, match=r"ends in '\.csv', but JSON"):
        check_output_suffix("metrics.csv", (".json",), "JSON")


# --- QA defects: every row of several methods labelled, stack scenes named as their outputs, --truth errors ----


def _two_methods(tmp_path) -> dict:
    """truth/s1, truth/s2; gap/ scored s1 and s2 (record: gap-tv), net/ only s1 (record: hsra-s.any)."""
    truths = _truth_folder(tmp_path)
    for folder, model, names in (("gap", "gap-tv", ("s1", "s2")), ("net", "hsra-s.any", ("s1",))):
        (tmp_path / folder).mkdir()
        for name in names:
            np.save(tmp_path / folder / f"{name}.npy", _noisy(truths[name], 0.05, 9))
            (tmp_path / folder / f"{name}.json").write_text(json.dumps({"model": model}))
    return truths


def test_with_several_methods_every_row_is_labelled_and_the_csv_has_a_method_column(tmp_path, capsys):
    """s2, scored by one method only, used to be a plain `s2` row: its method was lost from the CSV."""
    _two_methods(tmp_path)
    args = ["evaluate", str(tmp_path / "gap" / "s1.npy"), str(tmp_path / "gap" / "s2.npy"),
            str(tmp_path / "net" / "s1.npy"), "--truth", str(tmp_path / "truth")]
    assert main([*args, "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][0] == "name" and rows[0][-1] == "method"
    assert [(row[0], row[-1]) for row in rows[1:]] == [
        ("s1 (gap-tv)", "gap-tv"), ("s2 (gap-tv)", "gap-tv"), ("s1 (hsra-s.any)", "hsra-s.any"),
        ("mean (gap-tv)", "gap-tv"), ("mean (hsra-s.any)", "hsra-s.any")]
    # no scene in common at all: still one method per row
    assert main(["evaluate", str(tmp_path / "net" / "s1.npy"), str(tmp_path / "gap" / "s2.npy"),
                 "--truth", str(tmp_path / "truth"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["scenes"]] == ["s1 (hsra-s.any)", "s2 (gap-tv)"]
    assert main(["evaluate", str(tmp_path / "net" / "s1.npy"), str(tmp_path / "gap" / "s2.npy"),
                 "--truth", str(tmp_path / "truth")]) == 0
    out = capsys.readouterr().out
    assert "s1 (hsra-s.any)" in out and "s2 (gap-tv)" in out


def test_stack_scenes_are_named_as_their_outputs_and_still_pair(tmp_path, capsys):
    """Scene 0 of kstack.npz is kstack_0 in evaluate's rows, as render/simulate/reconstruct name its outputs."""
    np.savez(tmp_path / "kstack.npz", cube=np.random.default_rng(14).random((2, *SHAPE)).astype(np.float32))
    stack = f"{tmp_path / 'kstack.npz'}:0-1"
    assert main(["evaluate", stack, "--truth", stack, "--csv"]) == 0
    labels = [row[0] for row in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert labels == ["kstack_0", "kstack_1", "mean"]
    assert main(["evaluate", stack, "--truth", stack, "--json"]) == 0
    scenes = json.loads(capsys.readouterr().out)["scenes"]
    assert [(s["name"], s["pred"], s["truth"]) for s in scenes] == [
        ("kstack_0", f"{tmp_path / 'kstack.npz'}:0", f"{tmp_path / 'kstack.npz'}:0"),
        ("kstack_1", f"{tmp_path / 'kstack.npz'}:1", f"{tmp_path / 'kstack.npz'}:1")]
    assert all(s["psnr"] == 100 for s in scenes)  # each scene against itself


def test_scenes_of_a_prediction_stack_pair_with_truth_files_named_as_its_outputs(tmp_path, capsys):
    """t.npz scene 0 is t_0 in the rows: a truth folder holding t_0.npy and t_1.npy pairs with it by that name."""
    cubes = np.random.default_rng(15).random((2, *SHAPE)).astype(np.float32)
    np.savez(tmp_path / "t.npz", cube=cubes)
    (tmp_path / "tt").mkdir()
    for index in (1, 0):  # written out of order: pairing is by name
        np.save(tmp_path / "tt" / f"t_{index}.npy", cubes[index])
    np.save(tmp_path / "tt" / "zz.npy", cubes[0] * 0.5)
    assert main(["evaluate", str(tmp_path / "t.npz"), "--truth", str(tmp_path / "tt"), "--json"]) == 0
    scenes = json.loads(capsys.readouterr().out)["scenes"]
    assert [(s["name"], Path(s["truth"]).name, s["psnr"]) for s in scenes] == [
        ("t_0", "t_0.npy", 100), ("t_1", "t_1.npy", 100)]


@pytest.mark.parametrize("bad", ["nothere.npy", "empty/", "'*.nomatch.npy'", "stack.npy:7"])
def test_a_truth_that_names_nothing_is_a_usage_error_naming_truth_before_any_scoring(tmp_path, capsys, bad):
    truths = _truth_folder(tmp_path)
    (tmp_path / "rec").mkdir()
    (tmp_path / "empty").mkdir()
    for name, truth in truths.items():
        np.save(tmp_path / "rec" / f"{name}.npy", _noisy(truth, 0.05, 15))
    np.save(tmp_path / "stack.npy", np.stack(list(truths.values())))
    target = tmp_path / "metrics.csv"
    bad = str(tmp_path / bad.strip("'"))
    assert main(["evaluate", str(tmp_path / "rec"), "--truth", str(tmp_path / "truth"), "--truth", bad,
                 "--output-file", str(target)]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err)
    assert captured.err.startswith("hsra: error: --truth: ") and bad.rstrip("/").split("/")[-1] in captured.err
    assert captured.out == "" and not target.exists()


def test_a_missing_prediction_among_several_still_fails_alone(tmp_path, capsys):
    truths = _truth_folder(tmp_path)
    (tmp_path / "rec").mkdir()
    np.save(tmp_path / "rec" / "s1.npy", _noisy(truths["s1"], 0.05, 16))
    assert main(["evaluate", str(tmp_path / "rec" / "s1.npy"), str(tmp_path / "rec" / "s2.npy"),
                 "--truth", str(tmp_path / "truth"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["scenes"]] == ["s1"] and len(report["failed"]) == 1


def test_csv_on_stdout_is_its_header_even_when_every_input_fails(tmp_path, capsys):
    _, truth_path, _ = make_pair(tmp_path, "scene", 17)
    assert main(["evaluate", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--truth", str(truth_path),
                 "--csv"]) == 1
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows == [["name", *metrics.METRIC_KEYS, "method"]]
    assert "0 scored, 2 failed" in captured.err
    target = tmp_path / "m.csv"  # a file is never written with nothing scored
    assert main(["evaluate", str(tmp_path / "x.npy"), "--truth", str(truth_path), "--output-file", str(target)]) == 1
    assert not target.exists()


def test_the_scaling_of_an_integer_stack_is_said_once_per_file(tmp_path, capsys):
    rng = np.random.default_rng(4)
    stack = (rng.random((3, 16, 16, 28)) * 255).astype(np.uint8)
    np.save(tmp_path / "pred.npy", stack)
    np.save(tmp_path / "truth.npy", stack)
    code = main(["evaluate", f"{tmp_path / 'pred.npy'}:0-2", "--truth", str(tmp_path / "truth.npy")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("pred.npy: uint8 data scaled by 1/255") == 1 and err.count("truth.npy: uint8 data scaled") == 1


def test_a_result_file_holding_pred_and_truth_scores_pred_against_truth(tmp_path, capsys):
    """MST's Test_result.mat given as both: ``pred`` is scored against ``truth``, no --key needed."""
    import scipy.io

    truth = np.random.default_rng(21).random((2, *SHAPE)).astype(np.float32)
    scipy.io.savemat(tmp_path / "T.mat", {"pred": truth * 0.5, "truth": truth})
    assert main(["evaluate", str(tmp_path / "T.mat"), "--truth", str(tmp_path / "T.mat"), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["name"] for row in rows[:2]] == ["T_0", "T_1"]
    for index, row in enumerate(rows[:2]):
        expected = metrics.evaluate_cube(truth[index] * 0.5, truth[index])["psnr"]
        assert float(row["psnr"]) == pytest.approx(expected, abs=1e-4) and expected < 40


def test_an_output_file_never_replaces_the_record_evaluate_reads(two_scenes, tmp_path, capsys):
    """rec/x.json, hsra reconstruct's record beside rec/x.npy, names the method: -o rec/x.json would lose it."""
    pred, truth, _ = two_scenes[0]
    record = pred.with_suffix(".json")
    record.write_text('{"model": "mst"}')
    for flags in ([], ["--overwrite"], ["--json", "--overwrite"]):
        assert main(["evaluate", str(pred), "--truth", str(truth), "-o", str(record), *flags]) == 2
        err = capsys.readouterr().err
        assert_one_line_error(err)
        assert str(record) in err and "record" in err
        assert record.read_text() == '{"model": "mst"}'


def test_a_json_output_file_is_written_even_when_every_input_fails(tmp_path, capsys):
    _, truth_path, _ = make_pair(tmp_path, "scene", 22)
    target = tmp_path / "m.json"
    assert main(["evaluate", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--truth", str(truth_path),
                 "--output-file", str(target)]) == 1
    report = json.loads(target.read_text())
    assert report["scenes"] == [] and [f["input"] for f in report["failed"]] == [
        str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    assert "0 scored, 2 failed" in capsys.readouterr().err
    # one input: its one error line, and the file all the same
    target.unlink()
    assert main(["evaluate", str(tmp_path / "x.npy"), "--truth", str(truth_path), "--output-file", str(target)]) == 1
    assert_one_line_error(capsys.readouterr().err)
    assert [f["input"] for f in json.loads(target.read_text())["failed"]] == [str(tmp_path / "x.npy")]


def test_the_old_output_names_given_different_files_are_refused(two_scenes, tmp_path, capsys):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(evaluate_args(two_scenes, "--output", str(first), "--out", str(second))) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "a.csv" in err and "b.csv" in err
    assert not first.exists() and not second.exists()
    assert main(evaluate_args(two_scenes, "--output", str(first), "-o", str(first))) == 0  # the same file: fine
    assert first.is_file()


def test_pairing_errors_name_stack_scenes_as_the_rows_do(tmp_path, capsys):
    rng = np.random.default_rng(23)
    np.save(tmp_path / "stack.npy", rng.random((2, *SHAPE)).astype(np.float32))
    (tmp_path / "truth").mkdir()
    for name in ("other", "more"):
        np.save(tmp_path / "truth" / f"{name}.npy", rng.random(SHAPE).astype(np.float32))
    assert main(["evaluate", str(tmp_path / "stack.npy"), "--truth", str(tmp_path / "truth")]) == 1
    err = capsys.readouterr().err
    assert "no truth is named like 'stack_0'" in err and "no truth is named like 'stack_1'" in err
    assert "'stack:" not in err
    preds = tmp_path / "p"
    preds.mkdir()
    np.save(preds / "scene.npy", rng.random(SHAPE).astype(np.float32))
    np.save(preds / "other.npy", rng.random(SHAPE).astype(np.float32))
    assert main(["evaluate", str(preds), "--truth", f"{tmp_path / 'stack.npy'}:0-1"]) == 1
    err = capsys.readouterr().err
    assert "(truths: stack_0, stack_1)" in err and "stack:0" not in err


def test_readme_gives_num_parts_only_to_the_commands_that_take_it(capsys):
    """The README's "Batch runs" says which commands split a batch with --num-parts/--part-id: each --help agrees."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Batch runs", 1)[1].split("```", 1)[0]
    sentence = next(part for part in section.replace("\n", " ").split(". ") if "--num-parts" in part)
    for command in ("reconstruct", "simulate", "render", "evaluate"):
        assert main([command, "--help"]) == 0
        takes = "--num-parts" in capsys.readouterr().out
        said = f"hsra {command} --num-parts" in sentence
        assert takes == said, (command, sentence)
