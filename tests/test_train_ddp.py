"""Multi-process training (DDP) on the CPU with the Gloo backend: two processes, a tiny network, 32×32 patches.

Both ranks must end with bit-identical weights while drawing different data; a DDP run stopped and resumed
must end where an uninterrupted one does; and the command must run under torchrun with rank 0 alone writing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from hsra_cli.physics import as_operator
from hsra_cli.registry import list_models, register_model, unregister_model

TINY = "test-ddp-tiny"
BANDS = 4

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


class TinyConfig:
    def to_dict(self):
        return {}


class TinyNet(nn.Module):
    def __init__(self, bands: int = 28, step: int = 2, axis: str = "width"):
        super().__init__()
        self.bands, self.step, self.axis = bands, step, axis
        self.config = TinyConfig()
        self.conv = nn.Conv2d(bands, bands, 3, padding=1)

    def forward(self, measurement, mask):
        op = as_operator(mask, measurement, self.bands, self.step, self.axis)
        return self.conv(op.A_adjoint(measurement * (2.0 / self.bands)))


def ensure_registered() -> None:
    """Register the tiny net (also called in the worker processes, which import this module afresh)."""
    if TINY not in list_models():
        register_model(TINY, description="test network for DDP training")(TinyNet)


@pytest.fixture(autouse=True, scope="module")
def tiny_model():
    # Registered only while this module's tests run: other test modules list every registered network.
    ensure_registered()
    yield
    unregister_model(TINY)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "stack.npy", rng.random((3, 48, 48, BANDS), dtype=np.float32))
    np.save(tmp_path / "mask.npy", rng.random((48, 48), dtype=np.float32))
    return tmp_path


def _config(files: Path, out: str, **overrides):
    from hsra_cli.train import TrainConfig

    settings = dict(
        out=str(files / out), model=TINY, data=[f"{files / 'stack.npy'}:0-1"], val_data=[f"{files / 'stack.npy'}:2"],
        mask=str(files / "mask.npy"), patch_size=32, batch_size=2, steps=4, log_every=1, val_every=2, ckpt_every=2,
        mask_mode="random", threads=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def _worker(rank: int, world_size: int, files: Path, ports: list[int]) -> None:
    """One rank: an uninterrupted run, then the same run stopped at step 2 and resumed; dumps digests."""
    from hsra_cli.train import train
    from hsra_cli.train.distributed import state_dict_digest

    ensure_registered()
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1"}
    )
    digests = {}
    # a fresh rendezvous port for each process group: the previous one may still be in TIME_WAIT
    os.environ["MASTER_PORT"] = str(ports[0])
    whole = train(_config(files, "whole"))
    digests["whole"] = state_dict_digest(whole.trained)
    digests["reported"] = whole.weight_digests
    os.environ["MASTER_PORT"] = str(ports[1])
    train(_config(files, "split", stop_after=2))
    os.environ["MASTER_PORT"] = str(ports[2])
    resumed = train(_config(files, "split", resume=True))
    digests["resumed"] = state_dict_digest(resumed.trained)
    digests["first_batch"] = _first_batch_digest(files, rank)
    (files / f"rank{rank}.json").write_text(json.dumps(digests))


def _first_batch_digest(files: Path, rank: int) -> str:
    """Digest of the first batch this rank's sampler draws (same seed for every rank)."""
    import hashlib

    from hsra_cli.train.data import load_scenes
    from hsra_cli.train.sampler import MeasurementModel, PatchSampler

    scenes = [s.cube for s in load_scenes([f"{files / 'stack.npy'}:0-1"])]
    sampler = PatchSampler(
        scenes, np.load(files / "mask.npy"), MeasurementModel(bands=BANDS, mask_mode="random"),
        patch_size=32, batch_size=2, seed=0, rank=rank,
    )
    return hashlib.sha256(sampler.next_batch().cube.numpy().tobytes()).hexdigest()


def test_two_gloo_ranks_end_with_identical_weights_and_resume_exactly(files):
    mp.spawn(_worker, args=(2, files, [_free_port() for _ in range(3)]), nprocs=2, join=True)
    rank0, rank1 = (json.loads((files / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["whole"] == rank1["whole"]  # DDP keeps the replicas in step
    assert rank0["reported"] == [rank0["whole"], rank1["whole"]]  # and the run checked it itself
    assert rank0["resumed"] == rank1["resumed"] == rank0["whole"]  # stop + resume = uninterrupted
    assert rank0["first_batch"] != rank1["first_batch"]  # each rank has its own data stream
    # rank 0 alone wrote the files: one row per logged step, not two
    rows = (files / "whole" / "log.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]
    state = json.loads((files / "split" / "checkpoints" / "last.json").read_text())
    assert len(state["state"]["samplers"]) == 2  # both ranks' data streams are in the checkpoint


def test_the_command_runs_under_torchrun(files):
    script = files / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import test_train_ddp
            test_train_ddp.ensure_registered()
            from hsra_cli.cli import main
            sys.exit(main(["train", *sys.argv[1:]]))
            """
        )
    )
    out = files / "torchrun"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
        str(script), "--model", TINY, "--data", f"{files / 'stack.npy'}:0-1", "--mask", str(files / "mask.npy"),
        "-o", str(out), "--patch-size", "32", "--batch-size", "1", "--steps", "3", "--log-every", "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(out / TINY)  # printed once, by rank 0
    record = json.loads((out / "run.json").read_text())
    assert record["world_size"] == 2 and record["status"] == "completed"
    assert len(record["weight_sha256_per_rank"]) == 2 and len(set(record["weight_sha256_per_rank"])) == 1
    assert done.stderr.count("training test-ddp-tiny on ") == 1

    # A refusal on one rank (only rank 0 checks OUT) reaches every rank: all exit, none waits forever.
    command[command.index("--master_port") + 1] = str(_free_port())
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode != 0
    assert "hsra: error: " in again.stderr and "already holds a training run" in again.stderr
    assert "hsra: error: rank 0: " in again.stderr  # what rank 1 says
