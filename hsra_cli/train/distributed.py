"""Multi-process training: torch.distributed set up from the environment that ``torchrun`` provides.

One process per device. ``torchrun`` exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; without them (a plain ``hsra train``) the run is a single process and nothing here touches
torch.distributed. The backend is NCCL when training on CUDA and Gloo on the CPU.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

from ..errors import UsageError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run. ``rank 0`` alone logs, validates and writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    #: whether this context created the process group (and so destroys it at the end)
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def requested_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def init_distributed(device_type: str) -> DistContext:
    """Join the process group described by the environment; a no-op context for a single process.

    ``device_type`` is ``"cuda"`` or ``"cpu"``: it picks the backend and, on CUDA, binds this process to
    GPU ``LOCAL_RANK``.
    """
    world_size = requested_world_size()
    if world_size <= 1:
        return DistContext()
    import torch.distributed as dist

    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                "use --nproc_per_node ≤ the GPU count"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        backend=backend,
        owns_group=owns_group,
    )


def shutdown(context: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` created it (a caller's own group is left alone)."""
    if context.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_gather_objects(context: DistContext, obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not context.enabled:
        return [obj]
    import torch.distributed as dist

    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def state_dict_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``module.state_dict()`` (for cross-rank checks)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        # a byte view works for every dtype (bfloat16 has no numpy equivalent)
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
