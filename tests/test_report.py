"""hsra report: one self-contained HTML page per output folder, checked as text and in a real headless browser."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hsra_cli.batch import reconstruct_files
from hsra_cli.cli import main
from hsra_cli.io import write_array, write_cube
from hsra_cli.reconstruct import Reconstructor
from hsra_cli.report import spectral_points, write_report
from hsra_cli.simulate import generate_mask, simulate_measurement
from hsra_cli.synth import procedural_scene

from chromium import Chromium, find_chromium


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Three small reconstructions (one from a corrupted capture), their truths, and one unfinished cube."""
    root = tmp_path_factory.mktemp("report")
    captures, truths, out = root / "captures", root / "truths", root / "out"
    captures.mkdir()
    truths.mkdir()
    mask = generate_mask(24, 40, "random-binary", seed=0)
    write_array(root / "mask.mat", mask, key="mask")
    for index, name in enumerate(("alpha", "beta", "gamma")):
        cube = procedural_scene(24, 40, rng=np.random.default_rng(index))
        measurement, _ = simulate_measurement(cube, mask)
        if name == "beta":  # a corrupted sensor region: the worst residual
            measurement[4:20, 10:60] *= np.random.default_rng(5).uniform(0.0, 2.0, size=(16, 50)).astype(np.float32)
        write_array(captures / f"{name}.mat", measurement, key="meas")
        write_cube(truths / f"{name}.mat", cube)
    reconstructor = Reconstructor("gap-tv", model_kwargs={"iterations": 10, "accelerate": False})
    result = reconstruct_files(sorted(captures.iterdir()), root / "mask.mat", out, reconstructor, normalize="none")
    assert len(result.done) == 3
    write_cube(out / "delta.mat", procedural_scene(24, 40, rng=np.random.default_rng(9)))  # no record: unfinished
    return {"out": out, "truths": truths}


def _sections(page: str) -> list[str]:
    return re.findall(r'<section class="item" id="item-\d+" data-name="([^"]+)"', page)


def test_the_page_is_self_contained_sorted_worst_first_and_pairs_truths_by_name(batch, tmp_path):
    path, items = write_report(batch["out"], tmp_path / "r.html", truth=batch["truths"])
    page = path.read_text()
    assert _sections(page) == [item.name for item in items]
    assert _sections(page)[0] == "beta"  # the corrupted capture explains its measurement worst
    residuals = [item.residual for item in items]
    assert residuals == sorted(residuals, reverse=True)
    # Self-contained: every image is inline, nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 3 * 4 and all(s.startswith("data:image/") for s in sources)
    # Metrics against the truths with the same names, and the unfinished cube is named, not shown.
    assert all(item.metrics and item.metrics["psnr"] > 10 for item in items)
    assert "PSNR dB" in page and "delta" in page and "delta" not in _sections(page)
    # The thumbnails link to the full-size previews beside the records.
    assert 'href="../' in page or "_rgb.png" in page


def test_spectral_points_are_distinct_and_inside_the_image():
    cube = procedural_scene(30, 50, rng=np.random.default_rng(3))
    points = spectral_points(cube, 4)
    assert len(set(points)) == 4
    assert all(0 <= x < 50 and 0 <= y < 30 for x, y in points)


def test_cli_writes_the_report_and_refuses_to_overwrite_or_bad_folders(batch, tmp_path, capsys):
    target = tmp_path / "page.html"
    code = main(["report", str(batch["out"]), "-o", str(target), "-q", "--points", "2"])
    assert code == 0 and capsys.readouterr().out.strip() == str(target)
    code = main(["report", str(batch["out"]), "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err
    code = main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "x.html")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("hsra: error:")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["report", str(empty)])
    assert code == 1 and "no reconstruction record" in capsys.readouterr().err
    assert not (empty / "report.html").exists()


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (make browser installs it)")
def test_the_page_loads_in_headless_chromium_without_errors_and_shows_every_item(batch, tmp_path):
    path, items = write_report(batch["out"], tmp_path / "report.html", truth_dir=batch["truths"])
    with Chromium() as browser:
        page = browser.open(path)
        assert page.evaluate("document.body.getAttribute('data-ready')") == "yes"
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('section.item')).map(s => ["
            "  s.getAttribute('data-name'),"
            "  s.getBoundingClientRect().height,"
            "  Array.from(s.querySelectorAll('img')).every(i => i.complete && i.naturalWidth > 0),"
            "  s.querySelectorAll('img').length])")
        assert [s[0] for s in shown] == [item.name for item in items]
        assert all(height > 100 and loaded and count == 4 for _, height, loaded, count in shown), shown
        assert page.evaluate("document.querySelectorAll('#summary tbody tr').length") == len(items)
        # Sorting by a column header reorders the table and the items.
        page.evaluate("document.querySelector('th[data-key=name]').click()")
        order = page.evaluate("Array.from(document.querySelectorAll('section.item')).map(s => s.dataset.name)")
        assert order == sorted(item.name for item in items)
        page.evaluate("document.querySelector('th[data-key=residual]').click()")
        order = page.evaluate("Array.from(document.querySelectorAll('section.item')).map(s => s.dataset.name)")
        assert order == [item.name for item in items]  # residual, descending: the worst first again
        shot = page.screenshot(tmp_path / "report.png")
        assert shot.stat().st_size > 10_000
        assert page.errors() == []


def test_the_model_fact_names_adaptation_ensemble_and_refinement():
    from hsra_cli.report import ReportItem, _facts

    record = {"model": "hsra-s.any", "adapt": {"steps": 100}, "self_ensemble": {"members": 2},
              "refine": {"iterations": 5}}
    facts = dict(_facts(ReportItem("x", Path("x.json"), record)))
    assert facts["model"] == "hsra-s.any adapted 100 steps (self-ensemble ×2) + 5 refinement iterations"
    plain = dict(_facts(ReportItem("x", Path("x.json"), {"model": "gap-tv", "adapt": None, "refine": None})))
    assert plain["model"] == "gap-tv" and "chosen by" not in plain
    auto = dict(_facts(ReportItem("x", Path("x.json"), {"model": "gap-tv", "model_choice": {
        "requested": "auto", "chosen": "gap-tv", "reason": "hsra-dum-2stg was trained for …, and the capture has step=1"}})))
    assert auto["chosen by"] == "--model auto: hsra-dum-2stg was trained for …, and the capture has step=1"


def test_the_trust_fact_says_which_cube_its_map_is_of():
    from hsra_cli.report import ReportItem, _facts

    stats = {"p50": 0.01, "p90": 0.02, "p99": 0.05}
    refined = dict(_facts(ReportItem("x", Path("x.json"), {"model": "hsra-s", "residual_map": {
        **stats, "cube": "the network's cube before refinement"}})))
    assert refined["trust map p50 / p90 / p99 (the network's cube before refinement)"].startswith("0.01")
    solver = dict(_facts(ReportItem("x", Path("x.json"), {"model": "gap-tv", "residual_map": {
        **stats, "cube": "the reconstruction"}})))
    assert "trust map p50 / p90 / p99" in solver


# --- where the report goes, and what it never replaces ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["record", "cube", "rgb", "residual", "truth"])
def test_cli_never_writes_the_report_over_a_file_it_reads(batch, tmp_path, capsys, kind):
    from test_cli_pipeline import one_line_error, run

    target = batch["truths"] / "alpha.mat" if kind == "truth" else {
        "record": batch["out"] / "alpha.json", "cube": batch["out"] / "alpha.mat",
        "rgb": batch["out"] / "alpha_rgb.png", "residual": batch["out"] / "alpha_residual.png"}[kind]
    before = target.read_bytes()
    code, out, err = run(["report", batch["out"], "--truth", batch["truths"], "-o", target, "--overwrite", "-q"],
                         capsys)
    assert code == 2 and out == ""
    assert "would replace the input" in one_line_error(err)
    assert target.read_bytes() == before


def test_cli_writes_into_a_folder_named_by_out(batch, tmp_path, capsys):
    from test_cli_pipeline import run

    # A path ending in a separator is a folder (created), an existing folder too: report.html goes inside.
    code, out, err = run(["report", batch["out"], "-o", f"{tmp_path / 'reports'}/", "-q", "--points", "0"], capsys)
    assert code == 0, err
    assert out.strip() == str(tmp_path / "reports" / "report.html")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["report.html"]
    assert "alpha" in (tmp_path / "reports" / "report.html").read_text()
    (tmp_path / "existing").mkdir()
    code, out, err = run(["report", batch["out"], "-o", tmp_path / "existing", "-q", "--points", "0"], capsys)
    assert code == 0, err
    assert out.strip() == str(tmp_path / "existing" / "report.html")
    assert (tmp_path / "existing" / "report.html").is_file()


def test_cli_one_broken_record_gives_only_the_error_line(batch, tmp_path, capsys):
    import json

    from test_cli_pipeline import one_line_error, run

    record = json.loads((batch["out"] / "alpha.json").read_text())
    record["outputs"] = {"cube": "alpha.mat"}  # beside the record
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "alpha.json").write_text(json.dumps(record))
    (folder / "alpha.mat").write_text("not a MATLAB file")
    code, out, err = run(["report", folder], capsys)
    assert code == 1 and out == ""
    assert "alpha.mat" in one_line_error(err)
    assert sorted(p.name for p in folder.iterdir()) == ["alpha.json", "alpha.mat"]


def test_links_point_beside_the_page_in_a_copied_folder_and_are_url_encoded(tmp_path):
    """A copied output folder links its own PNGs (not the original's), and names with '#', '?', '%' stay links."""
    import shutil
    import urllib.parse

    mask = generate_mask(24, 40, "random-binary", seed=0)
    write_array(tmp_path / "mask.mat", mask, key="mask")
    captures = tmp_path / "caps"
    captures.mkdir()
    cube = procedural_scene(24, 40, rng=np.random.default_rng(3))
    write_array(captures / "scene#1 50%off?.mat", simulate_measurement(cube, mask)[0], key="meas")
    reconstructor = Reconstructor("gap-tv", model_kwargs={"iterations": 5, "accelerate": False})
    out = tmp_path / "out"
    assert len(reconstruct_files([captures / "scene#1 50%off?.mat"], tmp_path / "mask.mat", out, reconstructor,
                                 normalize="none").done) == 1
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path, _ = write_report(copy)
    hrefs = re.findall(r'<a href="([^"#][^"]*)"', path.read_text())
    assert hrefs, "the thumbnails link their full-size files"
    for href in hrefs:
        assert "#" not in href and "?" not in href and "out/" not in href
        assert (copy / urllib.parse.unquote(href)).is_file()  # resolved the way a browser does, beside the page


# ----------------------------------------------------------------------------------------------------------------
# bad inputs: an empty path, truths that cannot be scored, an output that is no HTML file


def test_an_empty_folder_or_input_is_refused_not_read_as_the_current_folder(batch, tmp_path, monkeypatch, capsys):
    from test_cli_pipeline import one_line_error, run

    from hsra_cli.errors import UsageError
    from hsra_cli.inputs import collect, parse_source

    monkeypatch.chdir(batch["out"])  # a folder of records and cubes: what "" would have been read as
    for args in (["report", ""], ["evaluate", "", "--truth", batch["truths"]], ["render", "", "-o", tmp_path / "r"]):
        code, out, err = run(args, capsys)
        assert code == 2 and out == "", args
        assert "is empty; expected a path (is a shell variable unset?)" in one_line_error(err)
    assert not (batch["out"] / "report.html").exists() and not (tmp_path / "r").exists()
    with pytest.raises(UsageError, match="is empty"):
        collect([str(batch["out"] / "alpha.mat"), ""])
    with pytest.raises(UsageError, match="is empty"):
        parse_source("")
    with pytest.raises(UsageError, match="is empty"):
        write_report("", tmp_path / "x.html")


@pytest.fixture(scope="module")
def bad_truths(batch, tmp_path_factory):
    """Truth folders: alpha good, beta of another size, gamma all zero; and one whose beta holds a NaN."""
    from hsra_cli.io import read_cube

    root = tmp_path_factory.mktemp("truths")
    good = {name: read_cube(batch["truths"] / f"{name}.mat")[0] for name in ("alpha", "beta", "gamma")}
    bad, nan = root / "bad", root / "nan"
    bad.mkdir()
    nan.mkdir()
    np.save(bad / "alpha.npy", good["alpha"])
    np.save(bad / "beta.npy", good["beta"][:16, :16])
    np.save(bad / "gamma.npy", np.zeros_like(good["gamma"]))
    for name, cube in good.items():
        cube = cube.copy()
        if name == "beta":
            cube[3, 3, 3] = np.nan
        np.save(nan / f"{name}.npy", cube)
    return {"bad": bad, "nan": nan}


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_each_truth_problem_is_a_warning_naming_its_item_and_the_report_is_still_written(batch, bad_truths, tmp_path,
                                                                                         capsys):
    from test_cli_pipeline import run

    target = tmp_path / "bad.html"
    code, out, err = run(["report", batch["out"], "--truth", bad_truths["bad"], "-o", target, "-q"], capsys)
    assert code == 1 and out.strip() == str(target) and "Traceback" not in err  # as a batch with a failed item
    warnings = _warnings(err)
    assert len(warnings) == 2, err
    beta, gamma = sorted(warnings)
    # the messages hsra evaluate gives for the same pairs
    assert beta.startswith("warning: beta:") and "does not match truth shape" in beta
    assert gamma.startswith("warning: gamma:") and "is all zero" in gamma
    page = target.read_text()
    assert _sections(page) == ["beta", "alpha", "gamma"] or set(_sections(page)) == {"alpha", "beta", "gamma"}
    assert "nan°" not in page and "ERGAS nan" not in page
    assert page.count("not compared with a truth") == 2 and "PSNR dB" in page

    # A NaN in one truth leaves the others scored: it fails alone.
    target = tmp_path / "nan.html"
    code, out, err = run(["report", batch["out"], "--truth", bad_truths["nan"], "-o", target, "-q"], capsys)
    assert code == 1 and target.is_file()
    assert [w.split(":")[1].strip() for w in _warnings(err)] == ["beta"] and "NaN" in err
    _, items = write_report(batch["out"], tmp_path / "api.html", truth=bad_truths["nan"])
    assert {item.name for item in items if item.metrics} == {"alpha", "gamma"}


def test_truths_that_pair_with_no_item_are_one_warning(batch, tmp_path, capsys):
    from test_cli_pipeline import run

    other = tmp_path / "other"
    other.mkdir()
    write_cube(other / "zeta.mat", procedural_scene(24, 40, rng=np.random.default_rng(1)))
    target = tmp_path / "r.html"
    code, out, err = run(["report", batch["out"], "--truth", other, "-o", target, "-q"], capsys)
    assert code == 1 and target.is_file()
    warnings = _warnings(err)
    assert len(warnings) == 1 and "pairs with none of the 3 item(s)" in warnings[0] and "zeta" in warnings[0]


def test_truth_takes_the_input_syntax_of_evaluate(batch, tmp_path, capsys):
    """Files, quoted patterns, repeated --truth and stack selectors, as hsra evaluate --truth takes them."""
    from test_cli_pipeline import run

    from hsra_cli.io import read_cube

    target = tmp_path / "r.html"
    code, out, err = run(["report", batch["out"], "--truth", batch["truths"] / "alpha.mat",
                          "--truth", str(batch["truths"] / "[bg]*.mat"), "-o", target, "-q"], capsys)
    assert code == 0 and _warnings(err) == [], err
    assert target.read_text().count("vs truth (field)") == 3
    cubes = [read_cube(batch["truths"] / f"{name}.mat")[0] for name in ("alpha", "beta", "gamma")]
    np.savez(tmp_path / "stack.npz", truth=np.stack(cubes))
    _, items = write_report(batch["out"], tmp_path / "s.html", truth=f"{tmp_path / 'stack.npz'}:0-2",
                            pair_by_position=True)
    by_name = {item.name: item.metrics for item in items}
    _, reference = write_report(batch["out"], tmp_path / "f.html", truth=batch["truths"])
    assert all(by_name[item.name]["psnr"] == pytest.approx(item.metrics["psnr"]) for item in reference)


def test_the_report_file_must_be_html(batch, tmp_path, capsys):
    from test_cli_pipeline import one_line_error, run

    for name in ("rep.txt", "report"):
        code, out, err = run(["report", batch["out"], "-o", tmp_path / name, "-q", "--points", "0"], capsys)
        assert code == 2 and out == ""
        line = one_line_error(err)
        assert name in line and ".html" in line
        assert not (tmp_path / name).exists()
    code, out, err = run(["report", batch["out"], "-o", tmp_path / "rep.HTM", "-q", "--points", "0"], capsys)
    assert code == 0 and (tmp_path / "rep.HTM").is_file()


def test_missing_metrics_show_a_dash_never_nan(batch, tmp_path, capsys):
    """Items without a truth (only alpha's given) show – in the table and an empty sort value, never nan; an
    undefined metric (SAM of an all-zero prediction) is – in the facts too."""
    from hsra_cli.report import ReportItem, _facts

    from test_cli_pipeline import run

    target = tmp_path / "one.html"
    code, out, err = run(["report", batch["out"], "--truth", batch["truths"] / "alpha.mat", "-o", target, "-q",
                          "--points", "0"], capsys)
    assert code == 1 and target.is_file()  # beta and gamma have no truth: warnings, as before
    page = target.read_text()
    shown = re.sub(r"<pre>.*?</pre>", "", re.sub(r'data:image/[^"]+', "", page), flags=re.S)  # not the records
    assert not re.search(r"\bnan\b", shown, re.I)
    rows = dict(re.findall(r'<tr data-id="\d+"[^>]*? data-name="([^"]+)"[^>]*? data-psnr="([^"]*)"', page))
    assert rows["beta"] == rows["gamma"] == "" and float(rows["alpha"]) > 10
    assert page.count("<td class=\"\">–</td>") == 4  # PSNR and SSIM of beta and gamma
    item = ReportItem("zero", Path("zero.json"), {"model": "gap-tv", "residual": float("nan")},
                      metrics={"psnr": 3.0, "ssim": 0.1, "sam": float("nan"), "ergas": float("nan")})
    facts = dict(_facts(item))
    assert facts["vs truth (field)"] == "PSNR 3.00 dB, SSIM 0.100, SAM –, ERGAS –"
    assert "nan" not in " ".join(facts.values())


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (make browser installs it)")
def test_items_without_a_metric_sort_last_in_both_directions(batch, tmp_path):
    path, items = write_report(batch["out"], tmp_path / "one.html", truth=batch["truths"] / "alpha.mat", points=0)
    with Chromium() as browser:
        page = browser.open(path)
        order = "Array.from(document.querySelectorAll('section.item')).map(s => s.dataset.name)"
        page.evaluate("document.querySelector('th[data-key=psnr]').click()")  # descending first
        first = page.evaluate(order)
        page.evaluate("document.querySelector('th[data-key=psnr]').click()")  # ascending
        second = page.evaluate(order)
        assert first[0] == "alpha" and second[0] == "alpha", (first, second)
        assert page.errors() == []


@pytest.mark.parametrize("spec", ["nothere/", "stack.npz:7", "stack.npz:3-1"])
def test_a_truth_spec_that_names_nothing_is_a_usage_error_and_nothing_is_written(batch, tmp_path, capsys, spec):
    from test_cli_pipeline import one_line_error, run

    from hsra_cli.errors import UsageError
    from hsra_cli.io import read_cube

    cubes = [read_cube(batch["truths"] / f"{name}.mat")[0] for name in ("alpha", "beta", "gamma")]
    np.savez(tmp_path / "stack.npz", truth=np.stack(cubes))
    spec = str(tmp_path / spec)
    target = tmp_path / "r.html"
    code, out, err = run(["report", batch["out"], "--truth", spec, "-o", target], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)  # no progress lines, no warnings: refused before any work
    assert line.startswith("hsra: error: --truth: ") and spec in line
    assert not target.exists()
    with pytest.raises(UsageError, match="^--truth: "):
        write_report(batch["out"], target, truth=spec)
    assert not target.exists()


def test_a_missing_out_dir_is_said_not_to_exist(tmp_path, capsys):
    from test_cli_pipeline import one_line_error, run

    code, out, err = run(["report", tmp_path / "nothere", "-o", tmp_path / "x.html"], capsys)
    line = one_line_error(err)
    assert code == 1 and out == ""  # as hsra evaluate and render end on a missing input
    assert "does not exist" in line and "nothere" in line and "not a folder" not in line
    (tmp_path / "file").write_text("x")
    code, out, err = run(["report", tmp_path / "file", "-o", tmp_path / "x.html"], capsys)
    assert code == 1 and "is not a folder" in one_line_error(err)
    assert not (tmp_path / "x.html").exists()


def test_pair_by_position_help_says_what_is_paired_with_what():
    import typer

    from hsra_cli.cli import app

    command = typer.main.get_command(app).commands["report"]
    text = next(p.help for p in command.params if p.name == "pair_by_position")
    assert "order of the records (by name) instead of by name" not in text
    assert "items in the order given" in text and "sorted by name" in text


# ----------------------------------------------------------------------------------------------------------------
# a folder of method folders (make demo's out/demo/<model>/): one page, items labelled by their subfolder


@pytest.fixture(scope="module")
def methods(batch, tmp_path_factory):
    """``methods/gap-tv/`` (the batch, its unfinished cube too) and ``methods/gap-tv-3/`` (the same captures, 3
    iterations: other residuals and metrics), as ``make demo`` writes one folder per method."""
    import shutil

    root = tmp_path_factory.mktemp("methods")
    shutil.copytree(batch["out"], root / "gap-tv")
    captures = batch["out"].parent / "captures"
    reconstructor = Reconstructor("gap-tv", model_kwargs={"iterations": 3, "accelerate": False})
    result = reconstruct_files(sorted(captures.iterdir()), batch["out"].parent / "mask.mat", root / "gap-tv-3",
                               reconstructor, normalize="none")
    assert len(result.done) == 3
    return root


def test_a_folder_of_method_folders_is_one_page_with_items_labelled_by_method(batch, methods):
    import urllib.parse

    path, items = write_report(methods, truth=batch["truths"], points=0)
    assert path == methods / "report.html"
    labels = [f"{name} ({folder})" for folder in ("gap-tv", "gap-tv-3") for name in ("alpha", "beta", "gamma")]
    assert sorted(item.label for item in items) == sorted(labels)
    page = path.read_text()
    assert _sections(page) == [item.label for item in items]
    residuals = [item.residual for item in items]
    assert residuals == sorted(residuals, reverse=True)  # worst first across both methods
    # Both methods' alpha pair with the one truth alpha, and score differently (3 iterations vs 10).
    alphas = {item.folder: item.metrics for item in items if item.name == "alpha"}
    assert set(alphas) == {"gap-tv", "gap-tv-3"} and all(m and m["truth"].endswith("alpha.mat") for m in alphas.values())
    assert alphas["gap-tv"]["psnr"] != pytest.approx(alphas["gap-tv-3"]["psnr"])
    assert page.count("vs truth (field)") == 6
    rows = re.findall(r'<tr data-id="\d+"[^>]*? data-name="([^"]+)" data-folder="([^"]+)"', page)
    assert sorted(rows) == sorted((label, label.split(" (")[1][:-1]) for label in labels)
    assert '<th data-key="folder"' in page and "one per method: gap-tv, gap-tv-3" in page
    assert "gap-tv/delta" in page  # the unfinished cube of a subfolder, by its folder
    hrefs = re.findall(r'<a href="([^"#][^"]*)"', page)
    assert hrefs and all((methods / urllib.parse.unquote(href)).is_file() for href in hrefs)
    assert any(href.startswith("gap-tv-3/") for href in hrefs)


def test_cli_reports_method_folders_and_warns_by_label(batch, methods, tmp_path, capsys):
    from test_cli_pipeline import run

    target = tmp_path / "r.html"
    code, out, err = run(["report", methods, "--truth", batch["truths"] / "alpha.mat", "-o", target,
                          "--points", "0"], capsys)
    assert code == 1 and out.strip() == str(target)  # beta and gamma of each method have no truth
    assert "[1/6] gap-tv/alpha" in err and "gap-tv-3/gamma" in err
    assert sorted(w.split(":")[1].strip() for w in _warnings(err)) == [
        "beta (gap-tv)", "beta (gap-tv-3)", "gamma (gap-tv)", "gamma (gap-tv-3)"]
    page = target.read_text()
    assert page.count("vs truth (field)") == 2
    # --pair-by-position pairs each method's items with the truths in order, as each folder alone.
    from hsra_cli.io import read_cube

    stack = np.stack([read_cube(batch["truths"] / f"{n}.mat")[0] for n in ("alpha", "beta", "gamma")])
    np.savez(tmp_path / "stack.npz", truth=stack)
    _, by_position = write_report(methods, tmp_path / "s.html", truth=f"{tmp_path / 'stack.npz'}:0-2",
                                  pair_by_position=True, points=0)
    _, by_name = write_report(methods, tmp_path / "n.html", truth=batch["truths"], points=0)
    psnr = {item.label: item.metrics["psnr"] for item in by_name}
    assert len(psnr) == 6 and all(item.metrics["psnr"] == pytest.approx(psnr[item.label]) for item in by_position)


def test_a_folder_with_records_of_its_own_shows_only_those_and_names_the_subfolders_left_out(batch, methods,
                                                                                            tmp_path, capsys):
    import shutil

    from test_cli_pipeline import run

    mixed = tmp_path / "mixed"
    shutil.copytree(batch["out"], mixed)
    shutil.copytree(methods / "gap-tv-3", mixed / "old")
    code, out, err = run(["report", mixed, "--points", "0"], capsys)
    assert code == 0 and out.strip() == str(mixed / "report.html")
    assert "Not included" in err and "old" in err and _warnings(err) == []
    page = (mixed / "report.html").read_text()
    assert sorted(_sections(page)) == ["alpha", "beta", "gamma"]
    assert "Not included: subfolder(s) with reconstructions of their own (old)" in page
    assert 'data-key="folder"' not in page


def test_method_folders_are_looked_for_one_level_deep_only(methods, tmp_path, capsys):
    import shutil

    from test_cli_pipeline import one_line_error, run

    shutil.copytree(methods / "gap-tv-3", tmp_path / "deep" / "a" / "gap-tv-3")
    code, out, err = run(["report", tmp_path / "deep"], capsys)
    assert code == 1 and "no reconstruction record" in one_line_error(err)
    assert not (tmp_path / "deep" / "report.html").exists()


# ----------------------------------------------------------------------------------------------------------------
# one bad item: listed with a note, the page still written, the item named on stderr, exit 1 at the end


def _copy(batch, tmp_path, name="copy"):
    """The batch's output folder copied (its records still name the original folder's files)."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(batch["out"], copy)
    return copy


def _edit_record(path, **changes):
    import json

    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def _notes(page: str, name: str) -> list[str]:
    """The notes of item ``name`` on the page."""
    import html

    section = re.search(rf'<section class="item" id="item-\d+" data-name="{re.escape(name)}".*?</section>', page,
                        re.S)
    assert section, f"{name} is not listed"
    return [html.unescape(note) for note in re.findall(r'<p class="(?:bad|warn)">([^<]*)</p>', section.group(0))]


def _damage(folder: Path, kind: str, elsewhere: Path) -> tuple[str, str]:
    """Damage one item of ``folder``: returns (the item's name, what its note and warning say)."""
    if kind == "truncated cube":
        (folder / "alpha.mat").write_bytes((folder / "alpha.mat").read_bytes()[:3000])
        return "alpha", "cannot read"
    if kind == "truncated rgb":
        data = (folder / "alpha_rgb.png").read_bytes()
        (folder / "alpha_rgb.png").write_bytes(data[:len(data) // 2])
        return "alpha", "cannot read its false colour"
    if kind == "null model, numeric cube":
        (folder / "x.json").write_text('{"model": null, "outputs": {"cube": 123}}')
        return "x", "outputs.cube is 123; expected a file name"
    if kind == "physics not an object":
        _edit_record(folder / "alpha.json", physics="zzz", mask=7, adapt={"no": "steps"})
        return "alpha", "physics is \"zzz\"; expected an object"
    if kind == "cube elsewhere":
        (elsewhere / "passwd").write_text("root:x:0:0\n")
        _edit_record(folder / "alpha.json", outputs={"cube": str(elsewhere / "passwd")})
        return "alpha", "its cube passwd is missing from"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated cube", "truncated rgb", "null model, numeric cube",
                                  "physics not an object", "cube elsewhere"])
def test_a_bad_item_is_listed_with_a_note_and_the_page_is_still_written(batch, tmp_path, capsys, kind):
    from test_cli_pipeline import run

    folder = _copy(batch, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    name, says = _damage(folder, kind, elsewhere)
    code, out, err = run(["report", folder, "--points", "2", "-q"], capsys)
    assert code == 1 and out.strip() == str(folder / "report.html"), err
    assert "Traceback" not in err and "internal error" not in err and "hsra: error" not in err
    warnings = [line for line in _warnings(err) if line.startswith(f"warning: {name}:")]
    assert warnings and any(says in line for line in warnings), err
    assert "could not be read or shown in full" in err.splitlines()[-1]
    page = (folder / "report.html").read_text()
    assert sorted(_sections(page)) == sorted({"alpha", "beta", "gamma", name})  # every item, the bad one too
    assert any(says in note for note in _notes(page, name)), _notes(page, name)
    assert f"could not be read or shown in full, each with a note saying why: {name}." in page
    if kind == "truncated rgb":  # the false colour is drawn from the cube instead, not linked to the damaged file
        hrefs = re.findall(r'<a href="([^"#][^"]*)"', page)
        assert "alpha_bands.png" in hrefs and "alpha_rgb.png" not in hrefs and "beta_rgb.png" in hrefs
        assert len(re.findall(r'<img src="data:image/jpeg[^"]*" alt="alpha rgb"', page)) == 1


def test_a_damaged_record_is_said_to_be_unreadable_not_unfinished(batch, tmp_path, capsys):
    from test_cli_pipeline import run

    folder = _copy(batch, tmp_path)
    (folder / "beta.json").write_text("{bad")
    code, out, err = run(["report", folder, "--points", "0", "-q"], capsys)
    assert code == 1 and (folder / "report.html").is_file()
    assert [line for line in _warnings(err) if line.startswith("warning: beta:")] == [
        next(line for line in _warnings(err) if "beta.json is unreadable: damaged JSON" in line)]
    page = (folder / "report.html").read_text()
    assert "beta" in _sections(page)
    assert any("unreadable: damaged JSON" in note for note in _notes(page, "beta"))
    unfinished = re.search(r"Unfinished \(a cube without its record, not shown\): ([^<]*)<", page).group(1)
    assert unfinished == "delta"  # beta has a record (a damaged one): not an unfinished output
    # A damaged JSON file that is no item's (no cube of its name) is some other file: ignored, as before.
    (folder / "beta.json").write_text((batch["out"] / "beta.json").read_text())
    (folder / "notes.json").write_text("{bad")
    code, _, err = run(["report", folder, "--points", "0", "-q", "--overwrite"], capsys)
    assert code == 0 and _warnings(err) == [], err


def test_a_cube_missing_from_a_copied_folder_is_never_read_from_the_original(batch, tmp_path, capsys):
    from test_cli_pipeline import run

    from hsra_cli.report import report_inputs

    folder = _copy(batch, tmp_path)
    (folder / "gamma.mat").unlink()
    assert (batch["out"] / "gamma.mat").is_file()  # the original, which gamma.json still names
    assert batch["out"] / "gamma.mat" not in report_inputs([folder / "gamma.json"])
    code, out, err = run(["report", folder, "--points", "2", "--truth", batch["truths"], "-q"], capsys)
    assert code == 1 and (folder / "report.html").is_file()
    line = next(line for line in _warnings(err) if line.startswith("warning: gamma:"))
    assert f"its cube gamma.mat is missing from {folder}" in line and str(batch["out"] / "gamma.mat") in line
    assert "which is not read" in line
    _, items = write_report(folder, tmp_path / "api.html", truth=batch["truths"], points=2)
    gamma = next(item for item in items if item.name == "gamma")
    assert gamma.image_size == (0, 0) and not gamma.points and gamma.metrics is None  # nothing of the original
    assert "spectra" not in gamma.images and gamma.links["rgb"] == "copy/gamma_rgb.png"  # its own previews


def test_the_one_item_of_a_folder_that_cannot_be_shown_is_one_error_line_and_no_page(batch, tmp_path, capsys):
    import shutil

    from test_cli_pipeline import one_line_error, run

    folder = tmp_path / "one"
    folder.mkdir()
    for name in ("alpha.json", "alpha.mat", "alpha_rgb.png", "alpha_bands.png", "alpha_residual.png"):
        shutil.copy(batch["out"] / name, folder / name)
    (folder / "alpha_rgb.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = run(["report", folder], capsys)
    assert code == 1 and out == ""
    line = one_line_error(err)
    assert "cannot read its false colour" in line and "alpha_rgb.png" in line and "internal error" not in line
    assert not (folder / "report.html").exists()


def test_odd_record_values_are_shown_as_they_are_never_an_internal_error():
    from hsra_cli.report import ReportItem, _facts, render_html

    record = {"model": "gap-tv", "mask": {"offset": 3}, "adapt": {"no": "steps"}, "refine": {"n": 1},
              "weights": {"sha256": 12345}, "input": {"path": 7}, "normalization": {"mode": 1},
              "residual_map": {"p99": "high"}, "seconds": {"reconstruct": "slow"}, "calibration": {"confident": 0}}
    item = ReportItem("odd", Path("odd.json"), record)
    facts = dict(_facts(item))
    assert facts["model"] == "gap-tv adapted ? steps + ? refinement iterations"
    assert facts["weights sha256"] == "12345" and facts["input"] == "7" and "mask offset 3" in facts["geometry"]
    page = render_html([item, ReportItem("empty", Path("empty.json"), {})], Path("out"), [])
    assert 'data-name="odd"' in page and 'data-name="empty"' in page


def test_the_false_colour_caption_says_how_the_previews_are_drawn(batch, tmp_path):
    """The caption names D65, as hsra reconstruct's _rgb.png is drawn (render's defaults), not equal-energy white."""
    from PIL import Image

    from hsra_cli.io import read_cube
    from hsra_cli.render import DEFAULT_ILLUMINANT, false_color

    cube, loaded = read_cube(batch["out"] / "alpha.mat")
    preview = np.asarray(Image.open(batch["out"] / "alpha_rgb.png").convert("RGB"))
    assert np.array_equal(preview, false_color(cube, loaded.metadata.get("wavelengths_nm")))
    path, _ = write_report(batch["out"], tmp_path / "r.html", points=0)
    captions = re.findall(r"<figcaption>(false colour[^<]*)</figcaption>", path.read_text())
    assert len(captions) == 3 and DEFAULT_ILLUMINANT == "D65"
    assert all("lit by D65" in caption and "equal-energy" not in caption for caption in captions)


def test_points_has_a_maximum_and_no_raw_warning_reaches_stderr(batch, tmp_path, capsys, monkeypatch):
    import warnings

    import typer

    from test_cli_pipeline import one_line_error, run

    import hsra_cli.cli.report_cmd as report_cmd
    import hsra_cli.report as report
    from hsra_cli.cli import app
    from hsra_cli.errors import UsageError

    assert (report_cmd.DEFAULT_POINTS, report_cmd.MAX_POINTS) == (report.DEFAULT_POINTS, report.MAX_POINTS) == (4, 10)
    for points in ("11", "1000", "-1"):
        code, out, err = run(["report", batch["out"], "--points", points, "-o", tmp_path / "r.html"], capsys)
        assert code == 2 and out == ""
        assert f"--points {points} is out of range; expected 0 to 10" in one_line_error(err)
        assert not (tmp_path / "r.html").exists()
    with pytest.raises(UsageError, match="expected 0 to 10"):
        write_report(batch["out"], tmp_path / "r.html", points=11)
    command = typer.main.get_command(app).commands["report"]
    assert "at most 10" in next(p.help for p in command.params if p.name == "points")
    # A warning raised while an item is drawn is a note of that item, never printed.
    chosen = report.spectral_points

    def noisy(cube, count):
        warnings.warn("constrained_layout not applied", UserWarning)
        return chosen(cube, count)

    monkeypatch.setattr(report, "spectral_points", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run(["report", batch["out"], "--points", "10", "--truth", batch["truths"],
                              "-o", tmp_path / "r.html", "-q"], capsys)
    assert code == 0 and err == "" and [str(w.message) for w in caught] == []
    page = (tmp_path / "r.html").read_text()
    assert page.count("while drawing it: constrained_layout not applied") == 3
