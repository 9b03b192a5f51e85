"""Training checkpoints that are never unpickled: tensors in safetensors, everything else in JSON.

A checkpoint is a pair in ``OUT/checkpoints/``:

* ``last.safetensors``: every tensor of the training state (model and EMA weights, optimizer moments, the
  torch RNG states), each under the dotted path where it sits in the state, e.g. ``optimizer.state.3.exp_avg``;
* ``last.json``: the rest of the state (step, schedule, python/numpy RNG states, the data samplers' states, the
  run's configuration) with ``{"__tensor__": key}`` where a tensor was, plus the SHA-256 of the tensor file so a
  pair torn by a crash between the two writes is refused instead of silently mixed.

The codec keeps what JSON cannot: tuples (``{"__tuple__": [...]}``), dicts with non-string keys such as the
optimizer's integer parameter ids (``{"__items__": [[key, value], ...]}``) and numpy arrays
(``{"__ndarray__": [...], "dtype": ...}``, for numpy's legacy RNG state).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import HsraError

FORMAT = "hsra-train-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
TENSORS_NAME = "last.safetensors"
STATE_NAME = "last.json"

_MARKERS = ("__tensor__", "__tuple__", "__items__", "__ndarray__")


class CheckpointError(HsraError):
    """A checkpoint is missing, torn or does not belong to this run."""


def checkpoint_paths(out_dir: Path) -> tuple[Path, Path]:
    folder = Path(out_dir) / CHECKPOINT_DIR
    return folder / TENSORS_NAME, folder / STATE_NAME


def _encode(obj, path: str, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        # clone: safetensors refuses tensors sharing storage (tied weights, views of one buffer)
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in obj):
            return {k: _encode(v, f"{path}.{k}" if path else k, tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"cannot store a dict key of type {type(k).__name__} at {path!r}")
            items.append([k, _encode(v, f"{path}.{k}" if path else str(k), tensors)])
        return {"__items__": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (at {path!r})")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"checkpoint state refers to tensor {key!r}, which the tensor file does not hold")
        return tensors[key]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _sha256(path: Path) -> str:
    from ..weights import sha256_of

    return sha256_of(path)


def save_checkpoint(out_dir: Path, state: dict, step: int) -> Path:
    """Write ``state`` (nested dicts/lists/tuples of tensors, numbers, strings, numpy arrays) atomically.

    Returns the path of the JSON file. The tensor file is written first and the JSON, which names the tensor
    file's hash, last: a reader never pairs a new JSON with an old tensor file without noticing.
    """
    from safetensors.torch import save_file

    from ..io import atomic_output

    tensors_path, state_path = checkpoint_paths(out_dir)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, "", tensors)
    with atomic_output(tensors_path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "step": str(int(step))})
    document = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "tensors_file": TENSORS_NAME,
        "tensors_sha256": _sha256(tensors_path),
        "state": encoded,
    }
    with atomic_output(state_path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return state_path


def load_checkpoint(out_dir: Path) -> dict:
    """Read the checkpoint pair of ``out_dir`` back into the nested state given to :func:`save_checkpoint`.

    Tensors come back on the CPU. Raises :class:`CheckpointError` (one line) when the pair is missing, torn,
    or not a ``hsra train`` checkpoint.
    """
    from safetensors.torch import load_file

    tensors_path, state_path = checkpoint_paths(out_dir)
    for path in (state_path, tensors_path):
        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume from: {str(path)!r} does not exist")
    try:
        document = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint state {str(state_path)!r} is not readable JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{str(state_path)!r} is not an hsra training checkpoint")
    if document.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(state_path)!r} has format version {document.get('version')}; this hsra reads {VERSION}"
        )
    if _sha256(tensors_path) != document.get("tensors_sha256"):
        raise CheckpointError(
            f"{str(tensors_path)!r} does not match {str(state_path)!r} (a save was interrupted between the two "
            "files); the checkpoint cannot be resumed"
        )
    try:
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"checkpoint tensors {str(tensors_path)!r} are unreadable: {exc}") from None
    return _decode(document["state"], tensors)


def checkpoint_config(out_dir: Path) -> dict:
    """The training options recorded in ``out_dir``'s checkpoint (its ``last.json``), read without the tensors:
    what ``hsra train -o OUT --resume`` replays where OUT has checkpoints but no run.json."""
    _, state_path = checkpoint_paths(out_dir)
    try:
        document = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint to resume from: {str(state_path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint state {str(state_path)!r} is not readable JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{str(state_path)!r} is not an hsra training checkpoint")
    state = document.get("state")
    config = state.get("config") if isinstance(state, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint state {str(state_path)!r} records no training options")
    return config


def update_checkpoint_state(out_dir: Path, **values) -> None:
    """Replace plain (tensor-free) entries of the checkpoint's state in ``last.json``, keeping its tensor file.

    Used for what is learnt after the checkpoint was written at the same step (the validation history): the
    checkpoint is saved before a validation, so a failing validation cannot lose the steps."""
    from ..io import atomic_output

    _, state_path = checkpoint_paths(out_dir)
    document = json.loads(state_path.read_text(encoding="utf-8"))
    for key, value in values.items():
        tensors: dict[str, torch.Tensor] = {}
        document["state"][key] = _encode(value, key, tensors)
        if tensors:
            raise TypeError(f"update_checkpoint_state takes plain values, and {key!r} holds tensors")
    with atomic_output(state_path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
