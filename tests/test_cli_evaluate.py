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
        assert set(scene) == {"name", "pred", "truth", *metrics.METRIC_KEYS}
        assert scene["pred"] == str(pred_path) and scene["truth"] == str(truth_path)
        expected = metrics.evaluate_cube(np.load(pred_path), np.load(truth_path), convention="float")
        for key in metrics.METRIC_KEYS:
            assert scene[key] == pytest.approx(expected[key])
    assert tuple(report["mean"]) == metrics.METRIC_KEYS
    for key in metrics.METRIC_KEYS:
        assert report["mean"][key] == pytest.approx(np.mean([s[key] for s in report["scenes"]]))
    assert "float convention" in captured.err


def test_csv_has_a_header_one_row_per_scene_and_a_mean_row(two_scenes, capsys):
    assert main(evaluate_args(two_scenes, "--csv")) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["name", "psnr", "ssim", "sam", "ergas", "lpsnr8", "lpsnr16"]
    assert [row[0] for row in rows[1:]] == ["scene1", "scene2", "mean"]
    assert float(rows[1][1]) == pytest.approx(two_scenes[0][2]["psnr"], abs=1e-5)
    assert float(rows[3][1]) == pytest.approx((two_scenes[0][2]["psnr"] + two_scenes[1][2]["psnr"]) / 2, abs=1e-5)


def test_output_file_gets_the_report_and_is_never_overwritten_silently(two_scenes, tmp_path, capsys):
    target = tmp_path / "metrics.json"
    assert main(evaluate_args(two_scenes, "-o", str(target))) == 0  # format from the suffix
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(target.read_text())["convention"] == "field"

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
    assert [s["name"] for s in scenes] == ["Test_result:0", "Test_result:1", "Test_result:2"]
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
