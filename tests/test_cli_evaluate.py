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


def test_count_mismatch_is_a_usage_error(two_scenes, capsys):
    (pred, truth, _), (pred2, _, _) = two_scenes
    assert main(["evaluate", str(pred), str(pred2), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "2 prediction(s) and 1 truth" in err


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
