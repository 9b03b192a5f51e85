"""What outputs tell about themselves and who may read them: the JSON record's provenance, and file modes that
follow the umask (shared model folders and result folders)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

import hsra_cli
import hsra_cli.weights
from hsra_cli import provenance
from hsra_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "colorchecker" / "meas"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_record_says_when_how_with_what_and_from_exactly_which_files(tmp_path, monkeypatch):
    (tmp_path / "caps").mkdir()
    for name in ("colorchecker.mat", "mask.mat"):
        (tmp_path / "caps" / name).write_bytes((SAMPLE / name).read_bytes())
    monkeypatch.chdir(tmp_path)  # relative paths on the command line, absolute ones in the record
    argv = ["reconstruct", "caps/colorchecker.mat", "--mask", "caps/mask.mat", "--model", "s", "--refine", "0",
            "--format", "npy", "--no-previews", "-o", "out", "-q"]
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert main(argv) == 0
    record = json.loads((tmp_path / "out" / "colorchecker.json").read_text())
    made = record["provenance"]
    created = datetime.strptime(made["created_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= created <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert made["command_line"] == shlex.join(["hsra", *argv])
    assert made["working_directory"] == str(tmp_path)
    assert made["hsra_version"] == hsra_cli.__version__
    assert record["input"]["path"] == str(tmp_path / "caps" / "colorchecker.mat")
    assert record["input"]["sha256"] == sha256(SAMPLE / "colorchecker.mat")
    assert record["mask_file"]["path"] == str(tmp_path / "caps" / "mask.mat")
    assert record["mask_file"]["sha256"] == sha256(SAMPLE / "mask.mat")
    assert record["outputs"]["cube"] == str(tmp_path / "out" / "colorchecker.npy")
    assert record["weights"]["source"] == str(hsra_cli.weights.find_model_folder("hsra-s"))
    assert all(os.path.isabs(path) for path in record["outputs"].values())
    # The git commit of the checkout hsra runs from, when it is one (the test's checkout may be a plain copy).
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                          text=True)
    lines = head.stdout.split()
    expected = lines[1] if head.returncode == 0 and Path(lines[0]).resolve() == ROOT else None
    assert made["git_commit"] == expected
    assert made["git_dirty"] in ((None,) if expected is None else (True, False))


def test_an_input_that_vanished_after_reading_is_recorded_without_a_hash(tmp_path):
    record = provenance.add_provenance({"input": {"key": "meas"}}, tmp_path / "gone.mat", None)
    assert record["input"]["sha256"] is None and "FileNotFoundError" in record["input"]["sha256_error"]
    assert record["input"]["key"] == "meas" and "mask_file" not in record


@pytest.fixture
def umask():
    """Set the process umask for one test, and restore it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize("mask_value", [0o022, 0o077])
def test_every_output_follows_the_umask(tmp_path, umask, mask_value):
    from hsra_cli.train.checkpoint import save_checkpoint
    from hsra_cli.weights import save_model_folder

    umask(mask_value)
    from hsra_cli.io import current_umask

    assert current_umask() == mask_value
    out = tmp_path / "shared" / "results"
    assert main(["reconstruct", str(SAMPLE / "colorchecker.mat"), "--mask", str(SAMPLE / "mask.mat"), "--model",
                 "hsra-s", "--refine", "0", "-o", str(out), "-q"]) == 0
    assert main(["render", str(out / "colorchecker.mat"), "--point", "10,10", "--figure-format", "pdf",
                 "-o", str(tmp_path / "shared" / "figures"), "-q"]) == 0
    torch.manual_seed(0)
    save_model_folder(hsra_cli.create_model("hsra-s"), tmp_path / "shared" / "models" / "hsra-s", card={})
    save_checkpoint(tmp_path / "shared" / "run", {"weights": torch.zeros(3), "step": 1}, step=1)

    files = [p for p in (tmp_path / "shared").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"colorchecker.mat", "colorchecker.json", "colorchecker_rgb.png", "colorchecker_bands.pdf",
            "model.safetensors", "config.json", "README.md"} <= names
    assert len(files) >= 12 and not [p for p in files if p.name.endswith(".tmp")]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask_value, path
    for folder in [p for p in (tmp_path / "shared").rglob("*") if p.is_dir()]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask_value, folder
