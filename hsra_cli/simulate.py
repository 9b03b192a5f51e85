"""Simulated CASSI snapshots: coded apertures, measurements and the field's noise models.

Measurements are in *field scale*: the plain sum over bands of the masked, sheared cube
(``CassiOperator.A``), as the KAIST benchmark files hold them. Noise:

* ``gaussian``: ``y + N(0, σ²)`` with σ in measurement units;
* ``shot``: the field's real-data recipe (TSA-Net, MST): on the network-normalised measurement
  ``y_n = gain · y · 2/bands``, draw ``Binomial(⌊y_n · bit/QE⌋, QE) / bit``, then scale back to field scale.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from .bands import DEFAULT_AXIS, DEFAULT_STEP
from .errors import ShapeError, UsageError, ValueRangeError
from .physics import CassiOperator, shifted_mask_bands

MASK_KINDS = ("random-binary", "random-grey")
NOISE_KINDS = ("none", "gaussian", "shot")

NoiseKind = Literal["none", "gaussian", "shot"]

#: The shot-noise model's settings when only ``--noise shot`` is given.
DEFAULT_QE = 0.4
DEFAULT_BIT_DEPTH = 2048
DEFAULT_GAIN = 1.0
#: The options of each noise model (what ``hsra simulate`` calls them).
_GAUSSIAN_OPTIONS = ("--noise-sigma",)
_SHOT_OPTIONS = ("--qe", "--bit-depth", "--gain")


def _is_number(value) -> bool:
    """A real number (a Python or numpy int or float; not a bool, a string or an array)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_whole(value) -> bool:
    """A whole number: an int (numpy's too; not a bool) or a finite float without a fraction (``2048.0``)."""
    if not _is_number(value):
        return False
    return not isinstance(value, (float, np.floating)) or (math.isfinite(value) and value == int(value))


def _python_names(*options: str) -> str:
    """`` (Python: noise=, noise_sigma=)``: the keyword arguments of :func:`simulate_measurement` that ``options``
    (``hsra simulate``'s flags) are, for messages that name the flags."""
    return " (Python: " + ", ".join(f"{option.lstrip('-').replace('-', '_')}=" for option in options) + ")"


def resolve_noise(noise=None, noise_sigma=None, qe=None, bit_depth=None, gain=None) -> dict:
    """The noise model and its settings from what the user gave (``None``: not given), in one place.

    Each value is checked first (σ finite and > 0, QE in (0, 1], bit depth a positive integer, gain finite and
    > 0). Then: an option of one model implies it when ``noise`` is not given (``--noise-sigma`` → gaussian;
    ``--qe``/``--bit-depth``/``--gain`` → shot); an option of another model than the one named, options of both
    models, and ``gaussian`` without a σ are :class:`UsageError` s — nothing the user asked for is ignored.

    Returns ``{"noise", "noise_sigma", "qe", "bit_depth", "gain"}``; the settings of a model not in use are None,
    those of the model in use filled with their defaults (so the result resolves to itself).
    """
    if noise is not None and noise not in NOISE_KINDS:
        raise UsageError(f"unknown --noise (Python: noise=) {noise!r}; expected one of: {', '.join(NOISE_KINDS)}")
    if noise_sigma is not None and not (_is_number(noise_sigma) and math.isfinite(noise_sigma) and noise_sigma > 0):
        raise UsageError(
            f"--noise-sigma (Python: noise_sigma=) {noise_sigma} is not a finite number > 0; expected the gaussian σ "
            "in measurement units, e.g. 0.01"
        )
    if qe is not None and not (_is_number(qe) and 0 < qe <= 1):
        raise UsageError(f"--qe (Python: qe=) {qe} is not in (0, 1]; expected a quantum efficiency such as 0.4")
    if bit_depth is not None and not (_is_whole(bit_depth) and bit_depth >= 1):
        raise UsageError(f"--bit-depth (Python: bit_depth=) {bit_depth} is not a positive integer; expected sensor "
                         "levels such as 2048")
    if gain is not None and not (_is_number(gain) and math.isfinite(gain) and gain > 0):
        raise UsageError(f"--gain (Python: gain=) {gain} is not a finite number > 0; expected a gain such as 1.2")
    gaussian_given = [o for o, v in zip(_GAUSSIAN_OPTIONS, (noise_sigma,)) if v is not None]
    shot_given = [o for o, v in zip(_SHOT_OPTIONS, (qe, bit_depth, gain)) if v is not None]
    if noise is None:
        if gaussian_given and shot_given:
            raise UsageError(
                f"{gaussian_given[0]} (gaussian noise) and {shot_given[0]} (shot noise) belong to different noise "
                "models; give the options of one: --noise gaussian with --noise-sigma, or --noise shot with --qe, "
                f"--bit-depth, --gain{_python_names(gaussian_given[0], shot_given[0])}"
            )
        noise = "gaussian" if gaussian_given else "shot" if shot_given else "none"
    elif noise == "none" and (gaussian_given or shot_given):
        option = (gaussian_given or shot_given)[0]
        model = "gaussian" if gaussian_given else "shot"
        raise UsageError(
            f"--noise none and {option} contradict each other: {option} sets {model} noise; drop {option} for a "
            f"noiseless measurement, or give --noise {model}{_python_names('--noise', option)}"
        )
    elif noise == "gaussian" and shot_given:
        raise UsageError(
            f"--noise gaussian and {shot_given[0]} contradict each other: {shot_given[0]} is an option of --noise "
            f"shot; drop {shot_given[0]}, or give --noise shot{_python_names('--noise', shot_given[0])}"
        )
    elif noise == "shot" and gaussian_given:
        raise UsageError(
            "--noise shot and --noise-sigma contradict each other: --noise-sigma is the σ of --noise gaussian; drop "
            f"--noise-sigma, or give --noise gaussian{_python_names('--noise', '--noise-sigma')}"
        )
    if noise == "gaussian" and noise_sigma is None:
        raise UsageError("--noise gaussian needs --noise-sigma > 0 (the σ in measurement units, e.g. 0.01; Python: "
                         "noise_sigma=)")
    shot = noise == "shot"
    return {
        "noise": noise,
        "noise_sigma": noise_sigma if noise == "gaussian" else None,
        "qe": (DEFAULT_QE if qe is None else qe) if shot else None,
        "bit_depth": (DEFAULT_BIT_DEPTH if bit_depth is None else int(bit_depth)) if shot else None,
        "gain": (DEFAULT_GAIN if gain is None else gain) if shot else None,
    }


def generate_mask(height: int, width: int, kind: str = "random-binary", seed: int = 0, fill: float = 0.5) -> np.ndarray:
    """A coded aperture ``height × width`` (float32 in [0, 1]).

    ``random-binary``: each pixel open with probability ``fill`` (the classic CASSI code).
    ``random-grey``: uniform transmission in [0.005, 1], like a calibrated grey-level capture of a binary code.
    """
    if not (_is_whole(height) and _is_whole(width) and height >= 1 and width >= 1):
        raise ShapeError(f"mask size must be positive whole numbers of pixels, got {height!r}×{width!r}")
    if not (_is_whole(seed) and seed >= 0):
        raise UsageError(f"mask seed (Python: seed=) must be a non-negative integer, got {seed!r}")
    height, width = int(height), int(width)
    rng = np.random.default_rng(int(seed))
    if kind == "random-binary":
        if not 0 < fill <= 1:
            raise UsageError(f"mask fill must be in (0, 1], got {fill}")
        return (rng.random((height, width)) < fill).astype(np.float32)
    if kind == "random-grey":
        return rng.uniform(0.005, 1.0, size=(height, width)).astype(np.float32)
    raise UsageError(f"unknown mask kind {kind!r}; expected one of: {', '.join(MASK_KINDS)}")


def shot_noise(
    measurement: torch.Tensor,
    bands: int,
    qe: float = 0.4,
    bit_depth: int = 2048,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The field's shot-noise model on a field-scale measurement; returns a field-scale measurement.

    ``gain`` multiplies the signal before the photon draw (the real-data recipe uses 1.2).
    """
    if not 0 < qe <= 1:
        raise UsageError(f"quantum efficiency must be in (0, 1], got {qe}")
    if bit_depth < 1:
        raise UsageError(f"bit depth must be positive, got {bit_depth}")
    if not (math.isfinite(gain) and gain > 0):  # an infinite gain makes infinite counts: the draw never ends
        raise UsageError(f"gain must be a finite number > 0, got {gain}")
    normalised = measurement * (gain * 2.0 / bands)
    counts = torch.floor(normalised.clamp(min=0) * (float(bit_depth) / qe))
    drawn = torch.binomial(counts, torch.full_like(counts, qe), generator=generator)
    return drawn / float(bit_depth) * (bands / 2.0)


def cube_range_warning(cube: np.ndarray) -> str | None:
    """The warning ``hsra simulate`` and :func:`simulate_measurement` give for a cube (``H×W×C``, integer data
    already scaled to [0, 1]) whose values are off the [0, 1] scale, or None."""
    low, high = float(cube.min()), float(cube.max())
    if high > 1.5 or low < -0.01:
        return f"values span {low:.3g}..{high:.3g}; CASSI cubes are usually in [0, 1]"
    return None


def simulate_measurement(
    cube_hwc: np.ndarray,
    mask,
    *,
    step: int = DEFAULT_STEP,
    axis: str = DEFAULT_AXIS,
    noise: NoiseKind | None = None,
    noise_sigma: float | None = None,
    qe: float | None = None,
    bit_depth: int | None = None,
    gain: float | None = None,
    seed: int = 0,
    mask_offset=None,
    on_warning=None,
) -> tuple[np.ndarray, CassiOperator]:
    """Snapshot of a cube ``H×W×C`` through ``mask`` (any form CassiOperator accepts), as ``hsra simulate``
    takes it.

    Both arrays may be numpy arrays (any numeric dtype), torch tensors or nested lists, and get the rules
    ``hsra simulate`` applies to files: an integer cube is scaled by its type's full scale to [0, 1]
    (:func:`hsra_cli.io.unit_range`); the mask follows :func:`hsra_cli.physics.input_values` (negative values and
    a float mask above 1 are a :class:`ValueRangeError`, an integer mask beyond 0/1 is scaled by its type's full
    scale); NaN/Inf and empty arrays are refused. ``mask_offset`` (row, column), as ``--mask-offset``: simulate
    through the window of a larger 2-D mask at that place. The noise options are those of :func:`resolve_noise`
    (None: not given; an option of one model implies it, one that would be ignored is a :class:`UsageError`).

    A cube off the [0, 1] scale is simulated with a warning (as ``hsra simulate`` warns): ``on_warning(message)``
    is called with it, or, without ``on_warning``, it is issued as a Python :class:`UserWarning`.

    Returns the field-scale measurement (float32 ``H×W'``) and the operator used.
    """
    from .io import LoadedArray, unit_range
    from .physics import input_array, input_values

    settings = resolve_noise(noise, noise_sigma, qe, bit_depth, gain)
    noise = settings["noise"]
    data = input_array(cube_hwc, "cube")
    if data.ndim != 3:
        raise ShapeError(f"cube must be 3-D H×W×bands, got shape {data.shape}")
    integer_dtype = data.dtype.name if data.dtype.kind in "iu" else None
    cube_hwc, _ = unit_range(data.astype(np.float32), LoadedArray(data, "", "cube", {"integer_dtype": integer_dtype}))
    mask, _ = input_values(mask, "mask", "mask")
    warning = cube_range_warning(cube_hwc)
    if warning:
        if on_warning is not None:
            on_warning(warning)
        else:
            import warnings

            warnings.warn(f"cube {warning}", UserWarning, stacklevel=2)
    bands = cube_hwc.shape[-1]
    if mask_offset is not None:
        from .reconstruct import crop_mask, parse_mask_offset

        if mask.ndim != 2:
            raise UsageError(f"--mask-offset (Python: mask_offset=) crops a 2-D coded aperture; the mask is a 3-D "
                             f"shifted mask {tuple(mask.shape)}, which fixes the capture's size")
        mask = crop_mask(mask, cube_hwc.shape[0], cube_hwc.shape[1], parse_mask_offset(mask_offset))[0]
    try:
        op = CassiOperator(mask, bands=bands, step=step, axis=axis)
    except ShapeError:
        mask_bands = shifted_mask_bands(mask, step, axis)
        if mask_bands is not None and mask_bands != bands:  # no --bands can help: the cube has its band count
            raise ShapeError(
                f"the mask is a 3-D shifted mask for {mask_bands} bands but the cube has {bands} bands, so they do "
                f"not match; simulate this cube with a shifted mask for {bands} bands, or a 2-D aperture"
            ) from None
        raise
    cube = torch.from_numpy(np.ascontiguousarray(cube_hwc, dtype=np.float32)).permute(2, 0, 1)
    if tuple(cube.shape[-2:]) != op.cube_shape:
        h, w = op.cube_shape
        larger = h >= cube.shape[-2] and w >= cube.shape[-1] and np.ndim(mask) == 2
        raise ShapeError(
            f"cube is {cube.shape[-2]}×{cube.shape[-1]} but the mask is {h}×{w}; expected the same height and width"
            + ("; to simulate through a window of a larger mask, give its place (--mask-offset ROW,COL; Python: "
               "mask_offset=(row, column))" if larger else "")
        )
    y = op.A(cube)
    if not torch.isfinite(y).all():  # before the noise: NaN photon counts would never be drawn
        raise ValueRangeError("simulated measurement holds NaN/Inf; check the cube values")
    generator = torch.Generator().manual_seed(int(seed))
    if noise == "gaussian":
        y = y + settings["noise_sigma"] * torch.randn(y.shape, generator=generator)
    elif noise == "shot":
        qe, bit_depth, gain = settings["qe"], settings["bit_depth"], settings["gain"]
        peak = float(y.max()) * gain * 2.0 / bands * float(bit_depth) / qe  # the largest photon count drawn
        if not peak < float(np.finfo(np.float32).max):  # depends on the cube: this cube fails, not the call
            raise ValueRangeError(
                f"shot noise with --gain {gain}, --bit-depth {bit_depth} and --qe {qe} asks for more photons than "
                "can be counted; lower --gain or --bit-depth, or raise --qe (Python: gain=, bit_depth=, qe=)"
            )
        y = shot_noise(y, bands, qe=qe, bit_depth=bit_depth, gain=gain, generator=generator)
    if not torch.isfinite(y).all():
        raise ValueRangeError("simulated measurement holds NaN/Inf; check the cube values")
    return y.numpy().astype(np.float32), op



#: The placeholders of ``hsra simulate --name``.
SIMULATE_NAME_FIELDS = {
    "stem": "the cube's file name without its suffix (stem_N for scene N of a stack)",
    "parent": "the name of the cube's folder",
    "noise": "the noise model (none, gaussian, shot)",
    "seed": "the seed",
}
#: The mask every measurement of an output folder shares.
MASK_FILE = "mask.mat"
#: What every measurement hsra simulate writes says about itself (:func:`is_simulated_measurement` reads it back).
MEASUREMENT_SCALE = "field: sum over bands of the masked, sheared cube"


def is_simulated_mask(path) -> bool:
    """Whether ``path`` is the mask file ``hsra simulate`` writes beside its measurements (``MASK_FILE``, key
    ``mask`` with its ``mask_kind`` in the metadata)."""
    from .errors import HsraError
    from .io import read_array

    from pathlib import Path

    if Path(path).name != MASK_FILE:
        return False
    try:
        metadata = read_array(path, "mask").metadata or {}
    except (HsraError, OSError, ValueError):
        return False
    return "mask_kind" in metadata


def is_simulated_measurement(path) -> bool:
    """Whether ``path`` is a measurement ``hsra simulate`` wrote: key ``meas`` with its settings (the source cube
    and the field scale) in the file's metadata. Any other file under a measurement's name is the user's, never
    replaced without ``--overwrite``."""
    from .errors import HsraError
    from .io import read_array

    try:
        metadata = read_array(path, "meas").metadata or {}
    except (HsraError, OSError, ValueError):
        return False
    return metadata.get("scale") == MEASUREMENT_SCALE and "source" in metadata


def expand_inputs(items, key=None):
    """The scenes that ``items`` (paths, :class:`~hsra_cli.inputs.Source` s or :class:`~hsra_cli.inputs.Scene` s)
    name, in order and each once, reading only headers; returns ``(scenes, failures)``, ``failures`` holding
    ``(spec, error)`` for each input whose file or scene selector names no cube."""
    from pathlib import Path

    from .errors import HsraError
    from .inputs import Scene, Source, absolute, scenes_of

    scenes, failures, seen = [], [], set()
    for item in items:
        if isinstance(item, Scene):
            found = [item]
        else:
            source = item if isinstance(item, Source) else Source(Path(item), str(item))
            try:
                found = scenes_of(source, key)
            except HsraError as exc:
                failures.append((source.spec, exc))
                continue
        for scene in found:
            identity = (absolute(scene.path), scene.index)
            if identity not in seen:  # stack.npz:0-2 and stack.npz:2 simulate scene 2 once
                seen.add(identity)
                scenes.append(scene)
    return scenes, failures


def inputs_error(failures):
    """One error for a call none of whose inputs names a cube (``failures`` from :func:`expand_inputs` or
    :func:`hsra_cli.inputs.collect`): the input's own error, or one line naming each; a usage error when every
    failure is one."""
    from .errors import HsraError

    if len(failures) == 1:
        return failures[0][1]
    kind = UsageError if all(isinstance(error, UsageError) for _, error in failures) else HsraError
    return kind(f"none of the {len(failures)} inputs names a cube to simulate: " + "; ".join(str(e) for _, e in failures))


def simulate_files(
    cube_paths,
    out_dir,
    *,
    key=None,
    bands=None,
    mask_path=None,
    mask_key=None,
    mask_kind="random-binary",
    seed=0,
    step=DEFAULT_STEP,
    axis=DEFAULT_AXIS,
    noise=None,
    noise_sigma=None,
    qe=None,
    bit_depth=None,
    gain=None,
    mask_offset=None,
    preview=True,
    overwrite=False,
    skip_existing=False,
    name="{stem}",
    on_warning=None,
    on_written=None,
    on_failed=None,
    on_note=None,
    failed_inputs=(),
):
    """Simulate a measurement for each cube into ``out_dir``; returns a :class:`~hsra_cli.batch.BatchResult`
    (``outputs``: the paths written, in order).

    ``cube_paths``: files, :class:`~hsra_cli.inputs.Source` s (a stack gives each of its selected scenes) or
    :class:`~hsra_cli.inputs.Scene` s; ``failed_inputs``: ``(spec, error)`` of inputs the caller could not
    expand, reported with the others' failures once the call is accepted. The noise options are those of
    :func:`resolve_noise` (None: not given). ``mask_offset`` (row, column): simulate through the window of a larger
    2-D ``mask_path`` at that place, sized by the first cube; ``mask.mat`` then holds that window, and each
    measurement records where it lies (``mask_window``), as a real capture of a larger mask would be.
    Writes ``<name>.mat`` (key ``meas`` plus the physics and noise settings; ``name`` is a template of
    :data:`SIMULATE_NAME_FIELDS`), ``mask.mat`` (the 2-D aperture or 3-D mask used, key ``mask``) and, with
    ``preview``, ``<name>_meas.png``. A ``mask.mat`` already there holding the same mask is kept (so a shell loop
    can simulate one cube per call into one folder); a different one is refused unless ``overwrite``. Every
    output is checked before any is written; an output never replaces an input or another output of the same
    call (a ``name`` that gives a measurement the name of ``mask.mat`` is refused). ``skip_existing``: a cube
    whose set is complete (its measurement, written by hsra simulate, its preview, and ``mask.mat`` holding the
    mask of this call) is skipped (``skipped``); an incomplete set is redone, its files replaced, when every file
    of it that exists is hsra's (:func:`hsra_cli.batch.plan_set`). A cube that
    cannot be read or simulated fails alone (``on_failed(path, message)``); Ctrl-C/SIGTERM stops after the
    current file with ``interrupted`` and ``left`` set.
    """
    from pathlib import Path

    from .batch import (
        BatchResult, check_keep_or_replace, check_name_template, check_not_inputs, clean_stale_temporaries, output_name,
        plan_set,
    )
    from .errors import INTERRUPTS, HsraError, InputFileError, OutputExistsError
    from .inputs import SceneReader, same_file
    from .io import check_writable, output_folder, read_mask, write_array
    from .render import measurement_preview, save_png, written_by_hsra

    out_dir = Path(out_dir)
    settings = resolve_noise(noise, noise_sigma, qe, bit_depth, gain)
    noise = settings["noise"]
    if axis not in ("width", "height"):
        raise UsageError(f"--axis must be width or height, got {axis!r}")
    if mask_path is None and mask_kind not in MASK_KINDS:
        raise UsageError(f"unknown --mask-kind {mask_kind!r}; expected one of: {', '.join(MASK_KINDS)}")
    check_name_template(name, SIMULATE_NAME_FIELDS)
    check_keep_or_replace(skip_existing, overwrite)
    if mask_offset is not None:
        if mask_path is None:
            raise UsageError("--mask-offset places the capture in a --mask file larger than the cube; a generated mask "
                             "is made at the cube's size (give --mask)")
        mask_offset = _offset_pair(mask_offset)
    result = BatchResult()

    def fail(path, error: HsraError) -> None:  # path: an input's spec, or a Scene ("stack.npy:3")
        result.failed.append((Path(str(path)), str(error), error))
        if on_failed:
            on_failed(path, str(error))

    scenes, failures = expand_inputs(cube_paths, key)
    failures = [*failed_inputs, *failures]
    planned, stems = [], {}
    for scene in scenes:
        stem = output_name(name, stem=scene.stem, parent=scene.path.parent.name, noise=noise, seed=str(seed))
        # compared without case: on a case-insensitive disk (macOS, Windows) Mask.mat is mask.mat
        if f"{stem}.mat".casefold() == MASK_FILE.casefold():
            raise UsageError(
                f"--name {name!r} would write the measurement of {scene} to {out_dir / (stem + '.mat')}, where this "
                f"call writes its mask ({MASK_FILE}); give a --name that names it apart, e.g. '{{stem}}_meas'"
            )
        if stem.casefold() in stems:
            other, other_stem = stems[stem.casefold()]
            written = f"{stem}.mat"
            if other_stem != stem:
                written = f"{other_stem}.mat and {stem}.mat (one file on a disk that ignores case)"
            raise UsageError(
                f"inputs {other} and {scene} would both write {written}; name the outputs apart with --name "
                "(e.g. '{parent}_{stem}') or rename one"
            )
        stems[stem.casefold()] = (scene, stem)
        planned.append((scene, out_dir / f"{stem}.mat", out_dir / f"{stem}_meas.png" if preview else None))
    inputs = [scene.path for scene in scenes] + ([Path(mask_path)] if mask_path is not None else [])
    targets = [t for _, meas_path, png_path in planned for t in (meas_path, png_path) if t is not None]
    check_not_inputs(targets, inputs)
    mask_target = out_dir / MASK_FILE
    check_writable(mask_target, True)  # its content decides (below) whether it may be replaced
    mask = None
    larger = None  # with --mask-offset: the mask file, whose window at the offset the first cube sizes
    if mask_path is not None:
        mask, _ = read_mask(mask_path, mask_key)
        if mask_offset is not None:
            if np.ndim(mask) != 2:
                raise UsageError(f"--mask-offset crops a 2-D coded aperture; {mask_path} holds a 3-D shifted mask "
                                 f"{tuple(np.shape(mask))}, which fixes the capture's size")
            larger, mask = np.asarray(mask, dtype=np.float32), None
    # A set is complete only beside the mask it was simulated with: mask.mat holding this call's mask (a generated
    # one is known from mask.mat's size, a window from its size and the offset). With another mask there, every
    # set is redone (or the mask refused).
    kept_mask = _existing_mask(mask_target, mask, mask_kind, seed, larger, mask_offset)
    if skip_existing and mask is None and kept_mask is not None:
        mask = kept_mask  # the skipped measurements were simulated with it: the others must be too
    wanted = {"dispersion_step": step, "dispersion_axis": axis, **settings}
    if noise != "none":
        wanted["seed"] = seed  # the noise draw; a generated mask's seed is checked with mask.mat
    todo = []
    for scene, meas_path, png_path in planned:
        files = [meas_path] + ([png_path] if png_path is not None else [])
        every = all(path.exists() for path in files)
        complete = every and kept_mask is not None and is_simulated_measurement(meas_path)
        if complete and skip_existing and not overwrite:
            differ = _settings_differ(meas_path, wanted)
            if differ:  # not this call's measurement: skipping it would keep other settings without a word
                raise OutputExistsError(
                    f"{meas_path} exists, simulated with other settings ({differ}); --skip-existing skips only what "
                    "this call would write: pass --overwrite instead to replace it, or write to another folder"
                )
        # every file there but mask.mat missing (the set lacks it) or holding another mask (only --overwrite helps)
        missing = ([] if mask_target.exists() else [mask_target]) if every and kept_mask is None else None
        plan = plan_set(
            files, skip_existing=skip_existing, overwrite=overwrite, complete=complete, missing=missing,
            own=lambda path, meas_path=meas_path: is_simulated_measurement(path) if path == meas_path
            else written_by_hsra(path),
        )
        if plan == "skip":
            result.skipped.append(scene.path)
        else:
            todo.append((scene, meas_path, png_path, plan == "replace"))
    planned = todo
    for spec, error in failures:  # said once the call is accepted: a refusal above stays one line
        fail(spec, error)
    if not planned:
        return result
    with output_folder(out_dir):  # created here; removed again if nothing was written into it
        clean_stale_temporaries(out_dir, on_note)

        def settle_mask(mask_array: np.ndarray, write: bool = True) -> None:
            """Write mask.mat, or keep the one there when it holds this mask; refuse a different one (``write``
            False: only the refusal, before anything is computed)."""
            mask_array = np.asarray(mask_array, dtype=np.float32)
            if mask_target.exists():
                try:
                    existing, _ = read_mask(mask_target, "mask")
                except HsraError:
                    existing = None
                if existing is not None and existing.shape == mask_array.shape and np.array_equal(existing, mask_array):
                    if on_note and write:
                        on_note(f"kept {mask_target}: it already holds this mask")
                    return
                for source in inputs:
                    if same_file(mask_target, source):
                        raise UsageError(
                            f"output {mask_target} would replace the input {source} of this call; write to another folder (-o)"
                        )
                if not overwrite:
                    raise OutputExistsError(
                        f"{mask_target} exists and holds a different mask; pass --overwrite to replace it or write to "
                        "another folder"
                    )
            if not write:
                return
            if mask_target.exists() and on_warning:  # replaced (--overwrite): measurements left from the old one
                ours = {meas for _, meas, _, _ in planned}
                stale = sorted(p.name for p in out_dir.glob("*.mat")
                               if p != mask_target and p not in ours and is_simulated_measurement(p))
                if stale:
                    on_warning(f"{mask_target} now holds this call's mask; {len(stale)} measurement(s) there were "
                               f"simulated with the one it replaced ({', '.join(stale[:3])}{', …' if len(stale) > 3 else ''}): "
                               "simulate them again, or keep them apart from this mask")
            mask_meta = {"mask_kind": "file" if mask_path is not None else mask_kind, "seed": seed}
            if larger is not None:
                mask_meta["mask_window"] = {"mask": str(mask_path), "offset": list(mask_offset),
                                            "mask_shape": list(larger.shape)}
            written = write_array(mask_target, mask_array, key="mask", metadata=mask_meta, overwrite=overwrite)
            result.outputs.append(written)
            if on_written:
                on_written(written)

        if mask is not None:
            settle_mask(mask, write=False)
        mask_written = False  # mask.mat goes with the first measurement: if every cube fails, nothing is left
        reader = SceneReader(key, bands)
        handled = 0
        try:
            for scene, meas_path, png_path, replace in planned:
                try:
                    cube, loaded, _ = reader.read(scene)
                    warning = cube_range_warning(cube)  # said here, before the mask is settled, as it always was
                    if on_warning and warning:
                        on_warning(f"{scene}: {warning}")
                    if mask is None and larger is not None:  # the window the first cube sizes; the later ones too
                        from .reconstruct import crop_mask

                        mask = crop_mask(larger, cube.shape[0], cube.shape[1], mask_offset)[0]
                        settle_mask(mask, write=False)
                    elif mask is None:  # generated for the first cube; every later one must have its size
                        mask = generate_mask(cube.shape[0], cube.shape[1], mask_kind, seed)
                        settle_mask(mask, write=False)
                    if (mask_path is None or larger is not None) and tuple(cube.shape[:2]) != np.shape(mask):
                        # one folder holds one mask.mat: the one the first cube sized (or the one already there)
                        mh, mw = np.shape(mask)
                        raise ShapeError(
                            f"cube is {cube.shape[0]}×{cube.shape[1]} but this folder's mask is {mh}×{mw} ("
                            + ("the window at --mask-offset" if larger is not None else "generated")
                            + " at the size of the first cube simulated into it; one folder holds one mask.mat); simulate cubes of "
                            "another size into another folder (-o)"
                            + ("" if larger is not None else
                               ", or give a --mask at least as large as every cube with --mask-offset ROW,COL")
                        )
                    measurement, op = simulate_measurement(
                        cube, mask, step=step, axis=axis, **settings, seed=seed,
                        on_warning=lambda message: None,  # said above
                    )
                except (OutputExistsError, UsageError):
                    raise
                except HsraError as exc:
                    fail(scene, exc)
                    handled += 1
                    continue
                except MemoryError:
                    fail(scene, InputFileError(f"out of memory simulating {scene}"))
                    handled += 1
                    continue
                if not mask_written:
                    settle_mask(mask)
                    mask_written = True
                meta = {
                    **op.describe(),
                    **settings,
                    "seed": seed,
                    "source": str(scene),
                    "scale": MEASUREMENT_SCALE,
                }
                if larger is not None:  # where the capture lies in the mask file: what hsra calibrate finds
                    meta["mask_window"] = {"mask": str(mask_path), "offset": list(mask_offset),
                                           "mask_shape": list(larger.shape)}
                if (loaded.metadata or {}).get("wavelengths_nm") is not None:  # the cube's bands, for reconstruct
                    meta["wavelengths_nm"] = [float(w) for w in loaded.metadata["wavelengths_nm"]]
                written = []
                if replace and png_path is not None:  # the set reads as incomplete until its last file is new
                    png_path.unlink(missing_ok=True)
                try:
                    written.append(write_array(meas_path, measurement, key="meas", metadata=meta, overwrite=replace))
                    if png_path is not None:
                        written.append(save_png(png_path, measurement_preview(measurement), overwrite=replace))
                except (HsraError, OSError) as exc:  # e.g. a full disk: this cube fails, its partial output goes
                    for path in written:
                        path.unlink(missing_ok=True)
                    fail(scene, exc if isinstance(exc, HsraError) else HsraError(f"cannot write {meas_path}: {exc}"))
                    handled += 1
                    continue
                result.outputs.extend(written)
                result.done.append(scene.path)
                handled += 1
                if on_written:
                    for path in written:
                        on_written(path)
        except INTERRUPTS as exc:  # Ctrl-C, or SIGINT/SIGTERM as hsra_cli.errors.Interrupted
            import signal

            result.interrupted = getattr(exc, "signum", int(signal.SIGINT))
            result.left = [scene.path for scene, _, _, _ in planned[handled:]]
        return result


def _settings_differ(path, wanted: dict) -> str:
    """The settings a measurement ``hsra simulate`` wrote records differently from ``wanted`` (its metadata keys),
    as ``"noise none, now shot; …"``; empty when they agree."""
    from .io import read_measurement

    recorded = read_measurement(path)[1].metadata or {}
    differ = []
    for key, value in wanted.items():
        if key in recorded and recorded[key] != value and not (
            isinstance(value, float) and isinstance(recorded[key], (int, float)) and abs(recorded[key] - value) <= 1e-12
        ):
            differ.append((key, f"{key.replace('dispersion_', '')} {recorded[key]}, now {value}"))
    if any(key == "noise" for key, _ in differ):  # another noise model: its parameters differ as a matter of course
        differ = [(key, text) for key, text in differ if key not in ("noise_sigma", "qe", "bit_depth", "gain")]
    return "; ".join(text for _, text in differ)


def _offset_pair(offset) -> tuple[int, int]:
    """A (row, column) pair of non-negative integers, or :class:`UsageError`."""
    try:
        row, col = offset
        if int(row) != row or int(col) != col:
            raise ValueError
        row, col = int(row), int(col)
    except (TypeError, ValueError):
        raise UsageError(f"mask offset {offset!r} is not a (row, column) pair of integers") from None
    if row < 0 or col < 0:
        raise UsageError(f"mask offset {row},{col} is negative; expected the row and column of the window's corner")
    return row, col


def _existing_mask(mask_target, mask, mask_kind, seed, larger=None, offset=None):
    """The mask in ``mask_target`` when it is the one this call uses (``mask``: read from --mask; None: generated
    with ``mask_kind`` and ``seed``, whose size is then mask.mat's, or the window at ``offset`` of ``larger``, of
    mask.mat's size), else None (none there, or another)."""
    from .errors import HsraError
    from .io import read_mask

    if not mask_target.exists():
        return None
    try:
        existing, _ = read_mask(mask_target, "mask")
    except HsraError:
        return None
    existing = np.asarray(existing, dtype=np.float32)
    if mask is None and larger is not None:
        if existing.ndim != 2:
            return None
        (top, left), (h, w) = offset, existing.shape
        mask = larger[top : top + h, left : left + w]
    elif mask is None:
        if existing.ndim != 2 or mask_kind not in MASK_KINDS:
            return None
        mask = generate_mask(existing.shape[0], existing.shape[1], mask_kind, seed)
    mask = np.asarray(mask, dtype=np.float32)
    return existing if existing.shape == mask.shape and np.array_equal(existing, mask) else None
