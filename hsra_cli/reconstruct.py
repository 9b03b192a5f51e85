"""Reconstruction: measurement + mask -> cube, for any registered model, at any sensor size.

Layered like nnU-Net's predictor: :class:`Reconstructor` holds a model on a device and turns arrays into
cubes (:meth:`Reconstructor.reconstruct`); :mod:`hsra_cli.batch` turns files into files on top of it.

Large captures are reconstructed whole when the estimated memory fits ``memory_cap_gb``, else in CASSI-aware
tiles: each cube tile gets its own measurement window (wider by step·(bands−1) along the dispersion axis) and
its own mask crop, and overlapping tiles are blended with Gaussian weights.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import HsraError, ShapeError, UsageError, ValueRangeError
from .adapt import AdaptConfig, adapt_network
from .physics import CassiOperator, check_settings, input_values, shifted_mask_bands, unsheared_size
from .registry import AUTO, DEFAULT_NETWORK, FALLBACK_SOLVER, get_entry
from .solvers.gap_tv import DEFAULT_REFINE, refine, refine_settings
from .trust import map_statistics, measurement_residual

NORMALIZE_MODES = ("auto", "none", "max")
#: The field's real-capture scaling: the network-normalised measurement peaks at this value.
REAL_CAPTURE_PEAK = 0.8


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda (Python: device=\"cuda\") was asked for but no CUDA GPU is available; use cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}; expected auto, cpu or cuda")
    return torch.device(device)


#: A field-scale sum over C bands peaks at C × gain at most (every band 1, the mask open); simulations use gains up
#: to about 2 (the real-data noise model: 1.2). A capture peaking above this many times C is in counts: real.
FIELD_SCALE_GAIN_LIMIT = 2


def normalise_measurement(measurement: np.ndarray, bands: int, mode: str, key: str = "",
                          recorded_scale: str | None = None) -> tuple[np.ndarray, dict]:
    """Bring a measurement to the scale the models expect (field scale: the sum over bands).

    ``none``: used as given (simulated data in field scale). ``max``: the field's real-capture convention,
    ``y / max(y) · 0.8`` in the network's normalised units (y·2/bands), i.e. ``y / max(y) · 0.8 · bands/2`` in
    field scale. ``auto``: ``none`` when the file records that it is in field scale (``recorded_scale``, as
    ``hsra simulate`` writes it: a dark scene may peak below 1), else ``max`` for a real capture (stored under
    ``meas_real``, or peaking at ≤ 1, which a field-scale sum of many bands does not, or above
    :data:`FIELD_SCALE_GAIN_LIMIT` × ``bands``, which it does not reach: counts), else ``none``.
    """
    if mode not in NORMALIZE_MODES:
        raise UsageError(f"unknown --normalize (Python: normalize=) {mode!r}; expected one of: {', '.join(NORMALIZE_MODES)}")
    peak = float(np.max(measurement))
    reason = "as requested"
    if mode == "auto":
        if isinstance(recorded_scale, str) and recorded_scale.startswith("field"):
            mode, reason = "none", "the file records its measurement in field scale (a sum over bands)"
        elif key == "meas_real":
            mode, reason = "max", "the measurement is stored as meas_real (a real capture)"
        elif peak <= 1.0:
            mode, reason = "max", f"the measurement peaks at {peak:.3g} ≤ 1 (a real capture, not a field-scale sum)"
        elif peak > FIELD_SCALE_GAIN_LIMIT * bands:
            mode, reason = "max", (f"the measurement peaks at {peak:.4g}, above {FIELD_SCALE_GAIN_LIMIT} × {bands}, "
                                   f"beyond any field-scale sum over {bands} bands (a real capture in counts)")
        else:
            mode, reason = "none", f"the measurement peaks at {peak:.3g} (field scale: a sum over bands)"
    if mode == "none":
        return measurement, {"mode": "none", "reason": reason, "scale": 1.0}
    if peak <= 0:
        raise ValueRangeError("measurement is all zero or negative; cannot normalise it to its maximum")
    scale = REAL_CAPTURE_PEAK * bands / 2.0 / peak
    return measurement * np.float32(scale), {
        "mode": "max",
        "reason": reason,
        "scale": scale,
        "description": f"measurement / max · {REAL_CAPTURE_PEAK} in network units (y·2/bands)",
    }


#: Negative measurement values down to this fraction of the peak are read as noise around a dark level (a capture
#: with its dark frame subtracted, a simulation with Gaussian noise) and only warned about; deeper ones are refused.
NEGATIVE_NOISE_FRACTION = 0.25


def measurement_warnings(measurement: np.ndarray) -> list[str]:
    """Check that a measurement counts light: refuse (ValueRangeError) negative values beyond noise, and return
    one-line warnings for negative values that can be noise."""
    low, peak = float(np.min(measurement)), float(np.max(measurement))
    if low >= 0:
        return []
    if peak <= 0 or -low > NEGATIVE_NOISE_FRACTION * peak:
        raise ValueRangeError(
            f"measurement holds negative values down to {low:.3g} (peak {peak:.3g}); a measurement counts light: "
            f"expected values ≥ 0, or negatives within {NEGATIVE_NOISE_FRACTION:.0%} of the peak (noise)"
        )
    count = int(np.count_nonzero(measurement < 0))
    return [f"measurement holds {count} negative values (down to {low:.3g}, {-low / peak:.1%} of the peak); taken as noise"]


def crop_mask(mask: np.ndarray, height: int, width: int, offset: tuple[int, int] | None) -> tuple[np.ndarray, dict]:
    """Crop a 2-D aperture larger than the capture area to ``height × width`` at ``offset`` (row, column).

    A mask larger than the capture area is refused unless ``offset`` is given."""
    mh, mw = mask.shape
    if (mh, mw) == (height, width) and not any(offset or ()):
        # nothing to crop: the mask is the capture area (an offset of 0,0 says the same)
        return mask, {"cropped": False} if offset is None else {"cropped": False, "offset": [0, 0]}
    if mh < height or mw < width:
        raise ShapeError(
            f"mask is {mh}×{mw} but the capture needs a {height}×{width} aperture; expected a mask at least that large, "
            "or check --bands, --step and --axis (Python: bands=, step=, axis=)"
        )
    if offset is None:
        # A larger mask is only cropped when asked: a silent crop would hide a wrong --bands/--step.
        raise ShapeError(
            f"mask is {mh}×{mw} but the capture needs a {height}×{width} aperture; pass --mask-offset row,column "
            "(Python: mask_offset=(row, column)) to crop a larger mask, or check --bands, --step and --axis "
            "(Python: bands=, step=, axis=)"
        )
    top, left = offset
    if top < 0 or left < 0 or top + height > mh or left + width > mw:
        raise UsageError(
            f"--mask-offset {top},{left} (Python: mask_offset=({top}, {left})) puts the {height}×{width} crop outside "
            f"the {mh}×{mw} mask; "
            f"expected 0 ≤ row ≤ {mh - height} and 0 ≤ column ≤ {mw - width}"
        )
    return mask[top : top + height, left : left + width], {"cropped": True, "offset": [top, left], "mask_shape": [mh, mw]}


def _offset_part(value) -> int | None:
    """One coordinate of a mask offset as a Python int (numpy integers, integral floats); None otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool:
            return None
        value = value.item()
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def parse_mask_offset(offset) -> tuple[int, int] | None:
    """``mask_offset`` as :meth:`Reconstructor.reconstruct` takes it -> ``(row, column)`` Python ints, or None.

    Accepted: None, a pair of integers (numpy integers and integral floats too; a tuple, list, array or tensor),
    or the CLI's ``"row,col"`` string. Anything else, and ``"auto"`` (calibration is a separate step:
    :func:`hsra_cli.calibrate.calibrate`), is a :class:`UsageError` saying what is expected.
    """
    expected = "expected a (row, column) pair of integer pixel offsets, e.g. mask_offset=(120, 300) or '120,300'"
    if offset is None:
        return None
    if isinstance(offset, str):
        text = offset.strip()
        if text.lower() == "auto":
            raise UsageError(
                "mask_offset='auto' is not done by Reconstructor.reconstruct: find the offset first with "
                "hsra_cli.calibrate.calibrate([measurement, ...], mask, bands=...) and pass its .offset (its .step "
                "and .axis go to Reconstructor(step=..., axis=...)), or use the CLI's hsra reconstruct "
                "--mask-offset auto"
            )
        parts = text.split(",")
        try:
            pair = tuple(int(part) for part in parts) if len(parts) == 2 else None
        except ValueError:
            pair = None
        if pair is None:
            raise UsageError(f"mask_offset {offset!r} is not of the form 'row,col'; {expected}")
        return pair
    if isinstance(offset, (np.ndarray, torch.Tensor)):
        values = list(offset.reshape(-1)) if offset.ndim == 1 else None
    elif isinstance(offset, (tuple, list)):
        values = list(offset)
    else:
        values = None
    pair = tuple(_offset_part(value) for value in values) if values is not None and len(values) == 2 else None
    if pair is None or None in pair:
        shown = (f"{type(offset).__name__} of shape {tuple(offset.shape)}" if isinstance(offset, (np.ndarray, torch.Tensor))
                 else " ".join(repr(offset).split()))
        raise UsageError(f"mask_offset {shown} is not a pair of integers; {expected}")
    return pair


def _tile_size_value(tile_size) -> int | str | None:
    """``tile_size`` as the constructor takes it -> "auto", None or an int ≥ 0 (the geometry's minimum is
    checked once the model is known); a UsageError saying what is expected otherwise."""
    if tile_size is None:
        return None
    if isinstance(tile_size, str) and tile_size.strip().lower() == "auto":
        return "auto"
    value = None
    if isinstance(tile_size, str):
        try:
            value = int(tile_size.strip())
        except ValueError:
            value = None
    elif not isinstance(tile_size, (bool, np.bool_)):
        value = _offset_part(tile_size)  # ints, numpy integers, integral floats
    if value is None or value < 0:
        raise UsageError(f"--tile-size (Python: tile_size=) must be 'auto' (or None), 0 (never tile) or a whole number of pixels, "
                         f"got {tile_size!r}")
    return value


def _memory_cap_value(memory_cap_gb) -> float:
    """``memory_cap_gb`` -> a float > 0; a UsageError saying what is expected otherwise."""
    ok = not isinstance(memory_cap_gb, (bool, np.bool_)) and isinstance(memory_cap_gb, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(memory_cap_gb) or memory_cap_gb <= 0:
        raise UsageError(f"--memory-cap (Python: memory_cap_gb=) must be a finite number of GB > 0, got {memory_cap_gb!r}")
    return float(memory_cap_gb)


def gaussian_weights(height: int, width: int, sigma_fraction: float = 1 / 8) -> torch.Tensor:
    """Blending weights of a tile: a Gaussian centred on the tile (σ = size/8, as nnU-Net), floored above 0."""
    def profile(n: int) -> torch.Tensor:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        sigma = max(n * sigma_fraction, 1e-3)
        return torch.exp(-0.5 * (coords / sigma) ** 2)

    w = profile(height)[:, None] * profile(width)[None, :]
    w = w / w.max()
    return w.clamp(min=1e-3)


def tile_starts(size: int, tile: int, overlap: float, max_stride: int | None = None) -> list[int]:
    """Start offsets covering ``size`` with tiles of ``tile`` overlapping by ``overlap`` (a fraction); the
    stride is at most ``max_stride`` when given."""
    if tile >= size:
        return [0]
    stride = max(1, int(round(tile * (1 - overlap))))
    if max_stride is not None:
        stride = max(1, min(stride, max_stride))
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def dispersion_taper(length: int, spread: int, open_start: bool, open_end: bool) -> torch.Tensor:
    """Trust of each position of a tile along the dispersion axis.

    A tile's measurement window also holds light dispersed in from cube pixels just outside the tile, within
    ``spread`` = step·(bands−1) pixels of its two edges; the tile's reconstruction is unreliable there. Those
    margins get (almost) no weight, except at the image border where no outside light exists.
    """
    trust = torch.ones(length)
    ramp = torch.linspace(1e-3, 1.0, min(8, length))
    if open_start:
        trust[:spread] = 1e-3
        trust[spread : spread + len(ramp)] = ramp[: max(0, min(len(ramp), length - spread))]
    if open_end:
        trust[length - spread :] = 1e-3
        end = length - spread
        start = max(0, end - len(ramp))
        trust[start:end] = torch.minimum(trust[start:end], ramp.flip(0)[: end - start])
    return trust


def mask_file_bands(path, key: str | None = None, step: int | None = None, axis: str | None = None) -> int | None:
    """The band count a 3-D shifted mask file shows by its layout (:func:`hsra_cli.physics.shifted_mask_bands`,
    at ``step``/``axis`` or the field's 2 along the width); None for a 2-D aperture or an unclear layout. This is
    how ``hsra reconstruct`` takes ``--bands`` from such a mask when it is not given."""
    from .bands import DEFAULT_AXIS, DEFAULT_STEP
    from .io import read_mask

    mask, _ = read_mask(path, key)
    if mask.ndim != 3:
        return None
    return shifted_mask_bands(mask, step or DEFAULT_STEP, axis or DEFAULT_AXIS)


def capture_file_bands(path, key: str | None = None) -> int | None:
    """The band count a capture's file records (``bands`` in the metadata ``hsra simulate`` writes beside the
    measurement); None when it records none or cannot be read (reading it properly is the run's job). This is how
    ``hsra reconstruct`` takes ``--bands`` from simulated captures when it is not given."""
    from .errors import HsraError
    from .io import read_measurement

    try:
        _, loaded = read_measurement(path, key)
    except (HsraError, OSError, MemoryError):
        return None
    recorded = (loaded.metadata or {}).get("bands")
    return int(recorded) if isinstance(recorded, (int, float)) and int(recorded) == recorded and recorded >= 1 else None


def choose_model(bands: int | None = None, step: int | None = None, axis: str | None = None) -> tuple[str, str]:
    """What ``--model auto`` runs for a capture of this geometry: ``(registered name, reason)``.

    The shipped default network (:data:`~hsra_cli.registry.DEFAULT_NETWORK`) when its weights are installed and
    the geometry asked for (``None`` = not given, i.e. the network's own) is the one they were trained for; else
    GAP-TV, which needs no weights and takes any band count, dispersion step and axis.
    """
    import json

    from .weights import find_model_folder

    folder = find_model_folder(DEFAULT_NETWORK)
    if folder is None:
        return FALLBACK_SOLVER, f"no weights for {DEFAULT_NETWORK} are installed (hsra models)"
    try:
        physics = json.loads((folder / "config.json").read_text()).get("physics", {})
    except (OSError, ValueError):
        physics = {}  # loading the weights will say what is wrong with the folder
    trained = {"bands": physics.get("bands"), "step": physics.get("dispersion_step"),
               "axis": physics.get("dispersion_axis")}
    asked = {"bands": bands, "step": step, "axis": axis}
    differ = [f"{name}={value}" for name, value in asked.items()
              if value is not None and trained[name] is not None and value != trained[name]]
    geometry = f"{trained['bands']} bands, step {trained['step']} along the {trained['axis']}"
    if differ:
        return FALLBACK_SOLVER, (f"{DEFAULT_NETWORK} was trained for {geometry}, and the capture has "
                                 f"{', '.join(differ)}")
    return DEFAULT_NETWORK, f"the capture's geometry ({geometry}) is the one {DEFAULT_NETWORK} was trained for"


@dataclass
class Reconstruction:
    """The result of one reconstruction: the cube ``H×W×C`` (float32), a record of how it was made, and the trust
    map ``H×W`` (the measurement residual in scene coordinates, :func:`hsra_cli.trust.measurement_residual`)."""

    cube: np.ndarray
    record: dict = field(default_factory=dict)
    residual_map: np.ndarray | None = None


class Reconstructor:
    """A model on a device, ready to reconstruct measurements of any size.

    Args:
        model: ``auto`` (the default: the shipped network when the capture's geometry is the one it was trained
            for, else GAP-TV; :func:`choose_model`), or a registered name or alias (``gap-tv``, ``s``,
            ``hsra-dum-3stg`` …).
        weights: other weights for a network: a model folder or a ``.safetensors`` file (a bare file is built for
            ``bands``/``step``/``axis`` when given); default the installed model folder.
        device: ``auto``, ``cpu`` or ``cuda``.
        bands, step, axis: physics. Networks take theirs from their model folder; a value given here must agree.
            Without ``bands``, a 3-D shifted mask of another band count is followed as ``hsra reconstruct`` does:
            a solver (and ``auto``, which then chooses GAP-TV) reconstructs the band count its layout shows (noted
            in ``record["warnings"]``); a named network refuses.
        tile_size: ``None``/"auto" (whole image when it fits ``memory_cap_gb``, else tiles of 256), ``0`` (never
            tile) or a tile size in pixels, at least :meth:`min_tile_size` (twice the dispersion spread + 8).
        tile_overlap: overlap of neighbouring tiles as a fraction of the tile (0 ≤ overlap < 1).
        memory_cap_gb: memory budget in GB (> 0) for one forward pass; larger captures are tiled.
        amp: autocast (float16) on CUDA; never used on the CPU.
        refine: refinement iterations (GAP, TV on the correction) started from a network's estimate; ``None`` is :data:`DEFAULT_REFINE` for networks
            and 0 for solvers, 0 switches it off. They make the cube agree with the measurement
            (:func:`hsra_cli.solvers.gap_tv.refine`).
        self_ensemble: also run a network on the mirrored capture (rows reversed, an exact symmetry of CASSI:
            :meth:`CassiOperator.mirrored`) and average the two estimates before refinement; twice the network
            time for a cleaner cube.
        adapt: test-time adaptation steps (or an :class:`hsra_cli.adapt.AdaptConfig`): a copy of the network is
            fine-tuned on each capture from the capture alone before it reconstructs it (:mod:`hsra_cli.adapt`);
            0 (the default) switches it off.
    """

    def __init__(
        self,
        model: str = AUTO,
        *,
        weights=None,
        device: str = "auto",
        bands: int | None = None,
        step: int | None = None,
        axis: str | None = None,
        tile_size: int | str | None = "auto",
        tile_overlap: float = 0.25,
        memory_cap_gb: float = 4.0,
        amp: bool = True,
        refine: int | None = None,
        self_ensemble: bool = False,
        adapt: "int | AdaptConfig" = 0,
        model_kwargs: dict | None = None,
    ):
        self.requested = model
        if (bands, step, axis) != (None, None, None):  # refused here, not later under another name
            from .bands import DEFAULT_AXIS, DEFAULT_BANDS, DEFAULT_STEP

            check_settings(DEFAULT_BANDS if bands is None else bands, DEFAULT_STEP if step is None else step,
                           DEFAULT_AXIS if axis is None else axis)
            bands, step = (None if value is None else int(value) for value in (bands, step))
        #: the physics asked for (None = not given): a 3-D shifted mask of another band count is followed only
        #: when ``bands`` was not given (:meth:`_for_mask`)
        self._asked = {"bands": bands, "step": step, "axis": axis}
        self._for_bands: dict[int, Reconstructor] = {}  # reconstructors made for masks of another band count
        tile_size = _tile_size_value(tile_size)
        memory_cap_gb = _memory_cap_value(memory_cap_gb)
        if isinstance(tile_overlap, (bool, np.bool_)) or not isinstance(tile_overlap, (int, float, np.integer, np.floating)):
            raise UsageError(f"--tile-overlap (Python: tile_overlap=) must be a fraction in [0, 1), got {tile_overlap!r}")
        #: for ``auto``: what it chose and why ({"requested", "chosen", "reason"}); None when a model was named
        self.choice: dict | None = None
        self.options = {"device": device, "tile_size": tile_size, "tile_overlap": tile_overlap,
                        "memory_cap_gb": memory_cap_gb, "amp": amp, "refine": refine, "self_ensemble": self_ensemble,
                        "adapt": adapt, "model_kwargs": model_kwargs}  # to make it again for another geometry
        if isinstance(model, str) and model.lower() == AUTO:
            if weights is not None:
                raise UsageError("--weights (Python: weights=) belong to a network: name it with --model "
                                 f"(e.g. --model {DEFAULT_NETWORK} --weights FILE; Python: model={DEFAULT_NETWORK!r})")
            model, reason = choose_model(bands, step, axis)
            self.choice = {"requested": AUTO, "chosen": model, "reason": reason}
            network_only = [(option, name) for option, name, given in (
                ("--refine", "refine", bool(refine)), ("--self-ensemble", "self_ensemble", self_ensemble),
                ("--adapt", "adapt", bool(getattr(adapt, "steps", adapt)))) if given]
            if network_only and model == FALLBACK_SOLVER:
                option, name = network_only[0]
                raise UsageError(f"{option} needs a network, but --model auto chose {model}: {reason}; "
                                 f"name a model with --model (Python: {name}= needs model= naming a network)")
        self.entry = get_entry(model)
        self.name = self.entry.name
        if refine is None:
            refine = DEFAULT_REFINE if self.entry.needs_weights else 0
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise UsageError(f"--refine (Python: refine=) must be a whole number of iterations >= 0, got {refine!r}")
        if refine and not self.entry.needs_weights:
            raise UsageError(f"--refine (Python: refine=) refines a network's estimate; {self.entry.name} is an iterative "
                             "solver already")
        self.refine = refine
        if self_ensemble and not self.entry.needs_weights:
            raise UsageError(f"--self-ensemble (Python: self_ensemble=) averages a network over mirrored captures; "
                             f"{self.entry.name} is a solver")
        self.self_ensemble = bool(self_ensemble)
        self.adapt = adapt if isinstance(adapt, AdaptConfig) else AdaptConfig(steps=adapt)
        if self.adapt.steps and not self.entry.needs_weights:
            raise UsageError(f"--adapt (Python: adapt=) fine-tunes a network on the capture; {self.entry.name} is a solver")
        self.device = resolve_device(device)
        self.weights_info: dict = {}
        if not 0 <= tile_overlap < 1:
            raise UsageError(f"--tile-overlap (Python: tile_overlap=) must be a fraction in [0, 1), got {tile_overlap!r}")
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.memory_cap_gb = memory_cap_gb
        self.amp = amp and self.device.type == "cuda"
        requested = {"bands": bands, "step": step, "axis": axis}
        if self.entry.needs_weights:
            from .weights import load_pretrained

            if model_kwargs and self.choice is None:  # auto: they are the settings of the solver it may choose
                raise UsageError(
                    f"model_kwargs= sets a solver's settings; {self.entry.name} takes its settings from its weights' "
                    "card (an untrained network with other settings: hsra_cli.create_model(name, **kwargs))"
                )

            optics = {"bands": bands, "dispersion_step": step, "dispersion_axis": axis}  # a bare weights file's
            self.model, config = load_pretrained(model, weights=weights, device=str(self.device), physics=optics)
            physics = config.get("physics", {})
            trained = {
                "bands": physics.get("bands", self.model.bands),
                "step": physics.get("dispersion_step", self.model.step),
                "axis": physics.get("dispersion_axis", self.model.axis),
            }
            for name, value in requested.items():
                if value is not None and value != trained[name]:
                    raise UsageError(
                        f"{self.entry.name} was trained for {name}={trained[name]} but {name}={value} was asked for; "
                        "train or fine-tune a model for your optics (hsra train) or use gap-tv"
                    )
            # the weights' name: NAME.TAG for tagged folders (hsra-s.any), else the architecture's name
            folder_name = Path(config.get("folder") or "").name
            if weights is None and folder_name.startswith(f"{self.entry.name}."):
                self.name = folder_name
            self.weights_info = {
                "sha256": config.get("sha256"),
                "source": str(weights) if weights else config.get("folder", ""),
            }
            self.wavelengths_nm = physics.get("wavelengths_nm")
        else:
            if weights is not None:
                raise UsageError(f"{self.entry.name} is a solver without weights; drop --weights (Python: weights=)")
            kwargs = {k: v for k, v in requested.items() if v is not None}
            kwargs.update(model_kwargs or {})
            from .registry import create_model

            self.model = create_model(self.entry.name, **kwargs).to(self.device)
            self.wavelengths_nm = None
        self.model.eval()
        self.bands, self.step, self.axis = self.model.bands, self.model.step, self.model.axis
        if isinstance(tile_size, int) and 0 < tile_size < self.min_tile_size():
            raise UsageError(self._tile_too_small(tile_size))

    # ------------------------------------------------------------------------------------------------
    def operator_for(self, measurement: np.ndarray, mask: np.ndarray, mask_offset=None) -> tuple[CassiOperator, dict]:
        """Build (and check) the operator of this capture, cropping a larger 2-D mask at ``mask_offset``.
        ``measurement`` and ``mask`` are taken as :meth:`reconstruct` takes them."""
        mask_offset = parse_mask_offset(mask_offset)
        measurement, _ = input_values(measurement, "measurement", "measurement")
        mask, mask_note = input_values(mask, "mask", "mask")
        target, _ = self._for_mask(mask)
        op, mask_info = target._operator_for(measurement, mask, mask_offset)
        if mask_note:
            mask_info["scaled"] = mask_note
        return op, mask_info

    def _for_mask(self, mask: np.ndarray) -> tuple["Reconstructor", str | None]:
        """The reconstructor for this mask, and a note when it is not this one.

        As ``hsra reconstruct`` takes ``--bands`` from a 3-D shifted mask: when ``bands`` was not given and the
        mask's layout (:func:`~hsra_cli.physics.shifted_mask_bands`) shows another band count, a solver (and
        ``auto``, which then chooses GAP-TV) reconstructs that many bands; a named network, whose band count is
        its card's, refuses. Passing ``bands`` decides."""
        if mask.ndim != 3 or self._asked["bands"] is not None:
            return self, None
        shown = shifted_mask_bands(mask, self.step, self.axis)
        if shown is None or shown == self.bands:
            return self, None
        if self.entry.needs_weights and self.choice is None:
            raise UsageError(
                f"the 3-D mask is a shifted mask for {shown} bands (bands={shown}), but {self.name} reconstructs "
                f"{self.bands} bands (its card); use model='gap-tv' or model='auto', or weights trained for "
                f"{shown} bands"
            )
        if shown not in self._for_bands:
            self._for_bands[shown] = Reconstructor(self.requested, bands=shown, step=self._asked["step"],
                                                   axis=self._asked["axis"], **self.options)
        return self._for_bands[shown], f"{shown} bands, as the 3-D mask's layout shows (bands= overrides)"

    def _operator_for(self, measurement: np.ndarray, mask: np.ndarray, mask_offset=None) -> tuple[CassiOperator, dict]:
        """:meth:`operator_for` for arrays already through :func:`~hsra_cli.physics.input_values`."""
        if measurement.ndim != 2:
            raise ShapeError(f"measurement must be 2-D, got shape {measurement.shape}")
        mh, mw = measurement.shape
        if self.axis == "height":
            height, width = unsheared_size(mh, self.bands, self.step), mw
        else:
            height, width = mh, unsheared_size(mw, self.bands, self.step)
        if height < 1 or width < 1:
            raise ShapeError(
                f"measurement {mh}×{mw} is too small for {self.bands} bands at step {self.step} along the {self.axis}"
            )
        mask_info: dict = {"cropped": False}
        if mask.ndim == 2:
            mask, mask_info = crop_mask(mask, height, width, mask_offset)
        elif mask_offset:
            raise UsageError("--mask-offset (Python: mask_offset=) applies to 2-D apertures only, but a 3-D shifted mask "
                             "was given")
        op = CassiOperator(mask, bands=self.bands, step=self.step, axis=self.axis)
        op.check_measurement(torch.from_numpy(measurement))
        mask_info["form"] = op.mask_form
        return op, mask_info

    def _bytes_per_pixel(self) -> int:
        # Measured peak resident memory per cube pixel at 660×660 with 28 bands (benchmarks/bench_real.py):
        # ~1.8 kB for hsra-s (padded to 704²), ~1.5 kB for gap-tv. 64 float32 values per band and pixel
        # (7 kB at 28 bands) leaves room for the larger networks; a model may state its own figure.
        return getattr(self.model, "bytes_per_pixel", None) or 64 * self.bands * 4

    def _pixels_budget(self) -> int:
        return int(self.memory_cap_gb * 1e9 / self._bytes_per_pixel())

    def smallest_tile(self) -> int:
        """The smallest tile whose trusted middle survives the dispersion margins (see :meth:`_run_tiled`)."""
        return 2 * self.step * (self.bands - 1) + 64

    def min_tile_size(self) -> int:
        """The least ``tile_size`` this geometry takes: tiles that overlap by twice the dispersion spread
        (step·(bands−1)) along the dispersion axis and still advance by 8 px (see :meth:`_run_tiled`); at least 16."""
        return max(16, 2 * self.step * (self.bands - 1) + 8)

    def _tile_too_small(self, tile: int) -> str:
        spread = self.step * (self.bands - 1)
        return (f"--tile-size (Python: tile_size=) {tile} is too small for the dispersion spread of {spread} px "
                f"({self.bands} bands at step {self.step}); use 0 (never tile), auto, or at least {self.min_tile_size()}")

    def plan_tiles(self, height: int, width: int) -> int:
        """Tile size for a ``height × width`` cube (0 = whole image)."""
        if self.tile_size in (None, "auto"):
            if height * width <= self._pixels_budget():
                return 0
            side = int(math.sqrt(self._pixels_budget()))
            smallest = self.smallest_tile()
            if side < smallest:
                need = smallest * smallest * self._bytes_per_pixel() / 1e9
                raise UsageError(
                    f"--memory-cap {self.memory_cap_gb:g} GB fits tiles of {side} px, smaller than the {smallest} px "
                    f"automatic tiling takes at least ({self.bands} bands at step {self.step}: twice the dispersion "
                    f"spread and 64 px); give at least --memory-cap {math.ceil(need * 100) / 100:g}, or choose "
                    f"--tile-size (at least {self.min_tile_size()}) (Python: memory_cap_gb=, tile_size=)"
                )
            return max(smallest, min(512, side // 64 * 64 or 64))
        tile = int(self.tile_size)
        return 0 if tile >= max(height, width) else tile  # one tile covering the image: the whole image

    def _network(self, y: torch.Tensor, op: CassiOperator) -> torch.Tensor:
        if self.amp:
            with torch.autocast("cuda", dtype=torch.float16):
                return self.model(y, op).float()
        return self.model(y, op).float()

    def _forward(self, y: torch.Tensor, op: CassiOperator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cube, the network's cube before refinement, or None when nothing was refined)."""
        with torch.inference_mode():
            out = self._network(y, op)
            if self.self_ensemble:
                out = (out + op.mirror(self._network(op.mirror(y), op.mirrored()))) / 2
            if self.refine:  # per tile when tiled: the tile's untrusted margins get no weight either way
                return refine(out, y.float(), op, self.refine), out
        return out, None

    def _run_whole(self, y: torch.Tensor, op: CassiOperator, progress=None) -> torch.Tensor:
        # Iterative solvers (GAP-TV) report their iterations; networks run in one go.
        if progress is None or not hasattr(self.model, "on_iteration"):
            return tuple(None if c is None else c[0] for c in self._forward(y[None], op))
        self.model.on_iteration = progress
        try:
            return tuple(None if c is None else c[0] for c in self._forward(y[None], op))
        finally:
            self.model.on_iteration = None

    def _run_tiled(self, y: torch.Tensor, op: CassiOperator, tile: int, progress=None) -> torch.Tensor:
        height, width = op.cube_shape
        th, tw = min(tile, height), min(tile, width)
        spread = self.step * (self.bands - 1)
        disp_tile, disp_size = (th, height) if self.axis == "height" else (tw, width)
        # Along the dispersion axis each tile's margins of `spread` pixels are untrusted (see dispersion_taper):
        # neighbouring tiles must overlap by at least twice that so every pixel is trusted somewhere.
        max_stride = None
        if disp_tile < disp_size:
            max_stride = disp_tile - 2 * spread
            if max_stride < 8:
                raise UsageError(self._tile_too_small(tile))
        row_stride = max_stride if self.axis == "height" else None
        col_stride = max_stride if self.axis == "width" else None
        rows = tile_starts(height, th, self.tile_overlap, row_stride)
        cols = tile_starts(width, tw, self.tile_overlap, col_stride)
        out = torch.zeros(self.bands, height, width, device=self.device)
        before = torch.zeros_like(out) if self.refine else None
        norm = torch.zeros(1, height, width, device=self.device)
        base = gaussian_weights(th, tw)
        done = 0
        for top in rows:
            for left in cols:
                weights = base
                if self.axis == "height":
                    taper = dispersion_taper(th, spread, top > 0, top + th < height)
                    weights = base * taper[:, None]
                else:
                    taper = dispersion_taper(tw, spread, left > 0, left + tw < width)
                    weights = base * taper[None, :]
                weights = weights.to(self.device)
                sub_op = op.crop(top, left, th, tw)
                window = op.measurement_window(y, top, left, th, tw)
                cube, network_cube = self._forward(window[None].contiguous(), sub_op)
                out[:, top : top + th, left : left + tw] += cube[0] * weights
                if before is not None:
                    before[:, top : top + th, left : left + tw] += network_cube[0] * weights
                norm[:, top : top + th, left : left + tw] += weights
                done += 1
                if progress:
                    progress(done, len(rows) * len(cols))
        return out / norm, (None if before is None else before / norm)

    def _run(self, y: torch.Tensor, op: CassiOperator, tile: int, progress=None):
        """((cube, network cube before refinement or None), tile size used, CUDA fallback note or None): whole or
        tiled, retrying in tiles on CUDA OOM."""
        try:
            return (self._run_tiled(y, op, tile, progress) if tile else self._run_whole(y, op, progress)), tile, None
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
        height, width = op.cube_shape
        tile = max(64, self.min_tile_size(), (tile or min(height, width)) // 2)  # still more than the spread
        fallback = (f"CUDA ran out of memory; retried in {tile}-pixel tiles (set --tile-size (Python: tile_size=) "
                    "to choose)")
        try:
            return self._run_tiled(y, op, tile, progress), tile, fallback
        except torch.cuda.OutOfMemoryError:
            raise HsraError(
                f"CUDA ran out of memory even with {tile}-pixel tiles; use a smaller --tile-size (Python: tile_size=) "
                "or --device cpu (Python: device='cpu')"
            ) from None

    def reconstruct(
        self,
        measurement: np.ndarray,
        mask: np.ndarray,
        *,
        normalize: str = "auto",
        mask_offset: tuple[int, int] | None = None,
        key: str = "",
        progress=None,
        scale: str | None = None,
    ) -> Reconstruction:
        """Reconstruct one capture. ``measurement`` is ``H×W'`` (width axis), ``mask`` a 2-D aperture (cropped at
        ``mask_offset`` when larger: a (row, column) pair of integers or the CLI's ``"row,col"``,
        :func:`parse_mask_offset`; finding it is :func:`hsra_cli.calibrate.calibrate`'s job) or a 3-D shifted mask.
        Returns one :class:`Reconstruction`: ``.cube`` ``H×W×C`` (float32), ``.record`` (how it was made;
        ``record["warnings"]``: one-line notes about the data, e.g. negative values taken as noise) and
        ``.residual_map`` ``H×W``. ``progress``: None, or a callable ``progress(done, total)``, called after each
        tile, or each iteration of an iterative solver. ``key`` and
        ``scale``: the array's name in its file and the scale the file records (``hsra simulate`` writes
        ``"field: …"``), which ``normalize="auto"`` reads (:func:`normalise_measurement`).

        Both arrays may be numpy arrays (any numeric dtype, either byte order), torch tensors (any device) or nested
        lists, and get the rules ``hsra reconstruct`` applies to files (:func:`hsra_cli.physics.input_values`):
        empty arrays are refused (:class:`ShapeError`), as are NaN/Inf, a mask with negative values or a float mask
        above 1 (:class:`ValueRangeError`); integer measurements are scaled by their type's full scale, and integer
        masks beyond 0/1 by theirs (:func:`hsra_cli.io.mask_full_scale`: 255 or 65535 for int32/int64 by their
        greatest value), noted in ``record["warnings"]``. A measurement read with
        :func:`hsra_cli.io.read_measurement` keeps a file's integer type, so it is scaled as ``hsra reconstruct``
        scales the file."""
        if progress is not None and not callable(progress):
            raise UsageError(f"progress= must be None or a callable progress(done, total), got {progress!r}")
        mask_offset = parse_mask_offset(mask_offset)
        measurement, measurement_note = input_values(measurement, "measurement", "measurement")
        mask, mask_note = input_values(mask, "mask", "mask")
        value_warnings = measurement_warnings(measurement)
        value_warnings += [note for note in (measurement_note, mask_note) if note]
        target, bands_note = self._for_mask(mask)
        if bands_note:
            value_warnings.append(bands_note)
        return target._reconstruct(measurement, mask, mask_note, value_warnings, normalize=normalize,
                                   mask_offset=mask_offset, key=key, progress=progress, scale=scale)

    def _reconstruct(self, measurement: np.ndarray, mask: np.ndarray, mask_note: str | None, value_warnings: list,
                     *, normalize: str, mask_offset: tuple[int, int] | None, key: str, progress,
                     scale: str | None = None) -> Reconstruction:
        """:meth:`reconstruct` for arrays already checked, with the reconstructor that fits the mask."""
        op, mask_info = self._operator_for(measurement, mask, mask_offset)
        if mask_note:
            mask_info["scaled"] = mask_note
        scaled, norm_info = normalise_measurement(measurement, self.bands, normalize, key, scale)
        op = op.to(self.device)
        y = torch.from_numpy(np.ascontiguousarray(scaled)).to(self.device)
        height, width = op.cube_shape
        tile = self.plan_tiles(height, width)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        shipped, adapt_info = self.model, None
        try:
            if self.adapt.steps:  # a copy fine-tuned on this capture; the loaded weights stay as they are
                self.model, adapt_info = adapt_network(shipped, y, op, self.adapt)
            (cube, network_cube), tile, fallback = self._run(y, op, tile, progress)
        finally:
            self.model = shipped
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        residual, residual_map = measurement_residual(op, cube.float(), y)
        map_of = "the reconstruction"
        if network_cube is not None:
            # The refinement makes the cube explain the measurement almost exactly, so its own residual no longer
            # shows where the scene and the network's prior disagree; the network's cube before refinement does.
            map_residual, residual_map = measurement_residual(op, network_cube.float(), y)
            map_of = "the network's cube before refinement"
        else:
            map_residual = residual
        record = {
            "model": self.name,
            "model_choice": self.choice,
            "model_kind": self.entry.kind,
            "weights": self.weights_info,
            "physics": op.describe(),
            "mask": mask_info,
            "normalization": norm_info,
            "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""),
            "amp": self.amp,
            "tiling": {"tile_size": tile, "overlap": self.tile_overlap if tile else 0.0, "fallback": fallback},
            "refine": refine_settings(self.refine) if self.refine else None,
            "self_ensemble": {"members": 2, "symmetry": "mirror across the dispersion (rows for the width axis)"}
            if self.self_ensemble else None,
            "adapt": adapt_info,
            "seconds": {"reconstruct": seconds},
            "residual": residual,
            "residual_definition": "‖A x̂ − y‖ / ‖y‖ on the (normalised) measurement",
            "warnings": value_warnings,
            "residual_map": {**map_statistics(residual_map), "cube": map_of, "residual": map_residual},
        }
        if self.device.type == "cuda":
            record["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        return Reconstruction(cube.permute(1, 2, 0).contiguous().cpu().numpy(), record, residual_map)
