"""Training and validation data: cube files (or stacks of cubes) held in memory, synthetic scenes, the mask.

A data source is a file or a folder, optionally followed by a scene selector for files holding a stack of
cubes (``N × H × W × C``): ``kaist.npz:0-3`` (scenes 0, 1, 2, 3), ``kaist.npz:4``, ``stack.h5:0,2,5-7``.
Indices count from 0 and ranges include both ends. A folder contributes every supported file in it (sorted by
name, not recursive). Every cube is loaded once, as float32 in [0, 1]: integer files are divided by their
type's maximum (255 for uint8, 65535 for uint16), and float files outside [0, 1] are refused rather than
silently rescaled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError, ShapeError, UsageError, ValueRangeError, key_option
from ..inputs import absolute, parse_source  # the one scene-selector grammar of every command


# A float cube this far above 1 is in other units (0–255, 0–65535, radiance), not float noise.
_RANGE_TOLERANCE = 1e-3


@dataclass
class Scene:
    """One cube in memory: ``cube`` is ``H × W × C`` float32 in [0, 1]; ``name`` says where it came from."""

    name: str
    cube: np.ndarray


def _files_of(path: Path, text: str) -> list[Path]:
    from ..io import SUPPORTED_SUFFIXES

    if not path.exists():
        raise InputFileError(f"data source {text!r} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise InputFileError(
            f"folder {str(path)!r} holds no cube files; expected {', '.join(SUPPORTED_SUFFIXES)} files"
        )
    return files


def _to_unit(cube: np.ndarray, loaded, where: str) -> np.ndarray:
    from ..io import unit_range

    cube, _ = unit_range(cube, loaded)
    cube = cube.astype(np.float32, copy=False)
    low, high = float(cube.min()), float(cube.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise ValueRangeError(
            f"{where} has values in [{low:.4g}, {high:.4g}]; training expects cubes in [0, 1] "
            "(store them as floats in [0, 1], or as uint8/uint16 integers)"
        )
    return np.clip(cube, 0.0, 1.0)


def _read_file(path: Path, key: str | None, indices: list[int] | None, text: str) -> list[Scene]:
    """Every selected cube of one file: a 3-D cube, or a 4-D stack ``N × H × W × C`` / ``N × C × H × W``."""
    from ..io import _where, read_array, read_cube, to_hwc  # _where: "file ('key')", as every reader names an array

    try:
        cube, loaded = read_cube(path, key)
    except ShapeError as not_a_cube:
        # Only now look for a stack, so the common single-cube file is read once.
        loaded = read_array(path, key, role="cube")
        if loaded.data.ndim != 4:
            raise not_a_cube from None
        return _read_stack(loaded, indices, text, to_hwc)
    where = _where(path, loaded.key)
    if indices is not None and indices != [0]:
        raise UsageError(f"{text!r} selects scenes {indices} but {where} holds one cube (select :0 or nothing)")
    return [Scene(path.name, _to_unit(cube, loaded, where))]


def _read_stack(loaded, indices: list[int] | None, text: str, to_hwc) -> list[Scene]:
    from ..io import _where

    stack, path = loaded.data, loaded.path
    where = _where(path, loaded.key)
    if indices is None:
        indices = list(range(stack.shape[0]))
    bad = [i for i in indices if i >= stack.shape[0]]
    if bad:
        raise UsageError(
            f"{text!r} selects scene {bad[0]} but {where} holds {stack.shape[0]} scenes (0–{stack.shape[0] - 1})"
        )
    scenes = []
    for index in indices:
        try:
            cube = to_hwc(stack[index])
        except ShapeError as exc:
            raise ShapeError(f"{where} scene {index}: {exc}") from None
        scenes.append(Scene(f"{path.name}:{index}", _to_unit(cube, loaded, f"{where} scene {index}")))
    return scenes


def load_scenes(sources: list[str], key: str | None = None, what: str = "training",
                repeated: list[str] | None = None) -> list[Scene]:
    """All cubes named by ``sources`` (files, folders, ``file:SELECTOR``), in order, as :class:`Scene` s.

    Training data take each scene of a file once, as ``hsra simulate`` does (``stack.npz:0-2`` and
    ``stack.npz:2``: scene 2 once); the names of the scenes left out again are appended to ``repeated``.
    Validation scenes given twice are refused."""
    scenes: list[Scene] = []
    seen: set = set()
    for text in sources:
        path, indices = parse_source(str(text))
        files = _files_of(path, str(text))
        if indices is not None and path.is_dir():
            raise UsageError(f"{text!r}: a scene selector applies to a file holding a stack, not to a folder")
        for file in files:
            with key_option("--data-key"):
                read = _read_file(file, key, indices, str(text))
            for scene in read:
                # the scene's name is the file's name, with ":index" for a scene of a stack
                identity = (absolute(file), scene.name)
                if what == "validation" or identity not in seen:
                    seen.add(identity)
                    scenes.append(scene)
                elif repeated is not None and scene.name not in repeated:
                    repeated.append(scene.name)
    names = [scene.name for scene in scenes]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated and what == "validation":
        raise UsageError(f"validation scene {duplicated[0]} is given twice")
    return scenes


def synthetic_scenes(count: int, size: int, bands: int | None, seed: int) -> list[Scene]:
    """``count`` synthetic ``size × size`` scenes from :class:`hsra_cli.synth.SyntheticScenes` (seeded by
    ``seed``), at the default wavelengths for ``bands`` bands (28 when ``bands`` is None)."""
    from ..bands import default_wavelengths
    from ..synth import SyntheticScenes

    wavelengths = default_wavelengths(bands) if bands else None
    source = SyntheticScenes(size, size, wavelengths_nm=wavelengths, seed=seed)
    return [Scene(f"synthetic:{i}", np.clip(source.scene(i), 0.0, 1.0).astype(np.float32)) for i in range(count)]


def load_mask(path: str, key: str | None) -> tuple[np.ndarray, dict]:
    """The mask file as stored (2-D aperture or 3-D shifted mask) and a description for the records."""
    from ..io import read_mask

    if not Path(path).exists():  # worded as the commands' check of their mask (hsra_cli.cli._common.require_files)
        raise InputFileError(f"mask {path!r} does not exist")
    if Path(path).is_dir():
        raise InputFileError(f"mask {path!r} is a folder; expected a file")
    array, loaded = read_mask(path, key)
    return array, {"path": str(path), "key": loaded.key, "shape": list(array.shape)}


def aperture_from_mask(mask: np.ndarray, bands: int, step: int, axis: str) -> np.ndarray:
    """The 2-D aperture ``H × W`` (float32) to crop training masks from.

    A 3-D shifted mask (Φ) is accepted when every band sees the same aperture, as in the field's
    ``mask_3d_shift`` files; a Φ with different per-band masks cannot be cropped into an aperture.
    """
    if mask.ndim == 2:
        aperture = mask
    else:
        from ..physics import CassiOperator

        per_band = CassiOperator(mask, bands=bands, step=step, axis=axis).band_masks()[0].numpy()
        if not np.allclose(per_band, per_band[:1], atol=1e-6):
            raise ShapeError(
                "the 3-D mask gives each band a different aperture; training crops a 2-D aperture, so pass the "
                "2-D mask (H×W) instead"
            )
        aperture = per_band[0]
    aperture = np.ascontiguousarray(aperture, dtype=np.float32)
    # worded as hsra_cli.physics.CassiOperator refuses a mask for the other commands
    if not np.isfinite(aperture).all():
        raise ValueRangeError("mask holds NaN or Inf values; expected finite transmission values")
    if aperture.min() < 0:
        raise ValueRangeError(f"mask holds negative values (down to {aperture.min():.3g}); a mask transmits light: "
                              "expected values ≥ 0")
    if not aperture.max() > 0:
        raise ValueRangeError("mask is all zero; expected a coded aperture with open pixels")
    return aperture


def mask_fingerprint(aperture: np.ndarray) -> str:
    """A digest of an aperture as training crops it (shape and float32 values), to check a resume."""
    digest = hashlib.sha256(f"{aperture.shape}".encode())
    digest.update(np.ascontiguousarray(aperture, dtype=np.float32).tobytes())
    return digest.hexdigest()


def data_fingerprint(scenes: list[Scene]) -> str:
    """A digest of the scenes' names, shapes and values (cheap: two moments per band), to check a resume."""
    digest = hashlib.sha256()
    for scene in scenes:
        cube = scene.cube
        digest.update(f"{scene.name}:{cube.shape}".encode())
        moments = np.stack([cube.sum(axis=(0, 1), dtype=np.float64), (cube.astype(np.float64) ** 2).sum(axis=(0, 1))])
        digest.update(np.round(moments, 6).tobytes())
    return digest.hexdigest()
