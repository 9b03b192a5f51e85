"""The single-disperser CASSI forward model: the one home of the physics in ``hsra``.

Convention (the field's data, not deepinv's): band ``b`` of the masked cube is shifted by ``step * b`` pixels
along the dispersion axis and the bands are **summed** (not averaged)::

    y = sum_b shift_b(M ⊙ x_b)                         (H × W' with W' = W + step·(C−1), width axis)
    Aᵀ(r)_b = M ⊙ shift_back(r)_b,   shift_back(r)_b = r[:, step·b : step·b + W]

Φ ("Phi") is the shifted 3-D mask (band ``b`` of the aperture placed at offset ``step·b``) and
Φs = Σ_b Φ_b² is the diagonal of A Aᵀ. Everything else in the project (simulation, GAP-TV, the unfolding
networks, tiling, training) calls this operator; nothing else re-implements the shear.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch

from .bands import DEFAULT_AXIS, DEFAULT_BANDS, DEFAULT_STEP
from .errors import ShapeError, ValueRangeError
from .io import LoadedArray, _dtype_kind, _fmt_shape, mask_full_scale, unit_range

Axis = Literal["width", "height"]
_AXES = ("width", "height")


def sheared_size(size: int, bands: int, step: int) -> int:
    """Length of the measurement along the dispersion axis for a cube ``size`` pixels long."""
    return size + step * (bands - 1)


def unsheared_size(size: int, bands: int, step: int) -> int:
    """Length of the cube along the dispersion axis for a measurement ``size`` pixels long."""
    return size - step * (bands - 1)


def _as_tensor(array, what: str = "array") -> torch.Tensor:
    """A tensor of ``array`` (a tensor is detached, an array-like converted); values as given, integers as float32."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        tensor = torch.from_numpy(_native_numeric(array, what))
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


# ----------------------------------------------------------------------------------------------
# arrays handed over by a user: the one conversion behind Reconstructor.reconstruct, model(measurement, mask)
# and the operator's methods. The value rules are the file readers' (hsra_cli.io).

#: Input roles whose values are checked: a measurement counts light, a mask is a transmission.
_ROLES = ("measurement", "mask")


def _native_numeric(value, what: str) -> np.ndarray:
    """``value`` (numpy array, nested list, tensor on any device) as a C-contiguous numpy array of real numbers in
    the machine's byte order (a big-endian ``>f4`` array is converted); the dtype is otherwise kept."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
            tensor = tensor.float()  # bfloat16 & co. have no numpy type
        value = tensor.cpu().numpy()
    try:
        data = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ShapeError(f"{what} is not a rectangular array ({exc}); expected a numpy array or a torch tensor") from None
    kind = _dtype_kind(data.dtype)
    if kind != "numeric":
        raise ValueRangeError(f"{what} holds {kind} values (dtype {data.dtype}); expected an array of real numbers")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return np.ascontiguousarray(data)


def input_array(value, what: str) -> np.ndarray:
    """A user's array as a numpy array, checked: numeric, non-empty, finite, native byte order, C-contiguous.

    Accepts numpy arrays (any byte order), torch tensors (any device; detached and copied to the host) and nested
    lists. Raises :class:`ShapeError` for an empty array and :class:`ValueRangeError` for non-real values
    (complex, text, objects) or NaN/Inf; the message names ``what``. The dtype is kept (see :func:`input_values`)."""
    data = _native_numeric(value, what)
    if data.size == 0:
        raise ShapeError(f"{what} is empty (shape {_fmt_shape(data.shape)}); expected a non-empty array")
    if data.dtype.kind == "f":
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise ValueRangeError(f"{what} holds {bad} NaN/Inf values; expected finite numbers")
    return data


def input_values(value, what: str, role: str) -> tuple[np.ndarray, str | None]:
    """A user's measurement or mask as float32 numpy, with the rules ``hsra reconstruct`` applies to files.

    ``role="measurement"``: integer data is scaled by its type's full scale to [0, 1] (as the CLI scales integer
    measurements, :func:`hsra_cli.io.unit_range`). ``role="mask"``: the rules of :func:`hsra_cli.io.read_mask`
    (:func:`hsra_cli.io.mask_full_scale`: negative values refused; integer masks beyond 0/1 scaled by their full
    scale — an 8- or 16-bit type's own, 255 or 65535 for wider types by their greatest value, greater values
    refused; float masks above :data:`hsra_cli.io.MASK_TOLERANCE` refused). Returns ``(array, note)``, ``note``
    saying what was scaled (None when nothing was). Raises as :func:`input_array` does, and
    :class:`ValueRangeError` for values beyond float32 or outside the mask rule.
    """
    if role not in _ROLES:
        raise ValueError(f"role must be one of {_ROLES}, got {role!r}")
    data = input_array(value, what)
    integer_dtype = data.dtype if data.dtype.kind in "iu" else None  # booleans are 0/1 already
    with np.errstate(over="ignore"):
        values = data.astype(np.float32)
    if data.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueRangeError(
            f"{what} holds values beyond the float32 range (up to {float(np.max(np.abs(data))):.3g}); expected "
            "values in the data's units, e.g. [0, 1]"
        )
    if role == "mask":
        negative = int(np.count_nonzero(values < 0))
        full_scale = mask_full_scale(float(values.min()), float(values.max()), negative, integer_dtype, what)
        if full_scale is None:
            return values, None
        # as read_mask scales a mask file (``what: int64 data scaled by 1/255``)
        return (np.ascontiguousarray(values / np.float32(full_scale), dtype=np.float32),
                f"{what}: {integer_dtype.name} data scaled by 1/{full_scale}")
    if integer_dtype is None:
        return values, None
    # the readers' own scaling of integer data (``what: uint16 data scaled by 1/65535``)
    scaled, note = unit_range(values, LoadedArray(values, "", what, {"integer_dtype": integer_dtype.name}))
    return np.ascontiguousarray(scaled, dtype=np.float32), note


def network_input(value, what: str, role: str, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """A measurement or mask for a ``model(measurement, mask)`` call, as a tensor.

    Arrays, lists and integer tensors go through :func:`input_values` (the CLI's rules; checked, scaled, float32)
    and land on ``device`` (default: the tensor's own, else the CPU). A floating-point tensor keeps its autograd
    graph and device; on the CPU its values are checked the same way (finite; a mask in [0, 1]), on an accelerator
    they are not (the check would make the device wait, e.g. in every training step). ``dtype``: the floating
    type the result is cast to (a model's parameter type), None to keep it.
    """
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        if value.numel() == 0:
            raise ShapeError(f"{what} is empty (shape {tuple(value.shape)}); expected a non-empty array")
        if value.device.type == "cpu":
            with torch.no_grad():
                bad = int(value.numel() - torch.isfinite(value).sum())
                if bad:
                    raise ValueRangeError(f"{what} holds {bad} NaN/Inf values; expected finite numbers")
                if role == "mask":
                    low, peak = float(value.min()), float(value.max())
                    negative = int((value < 0).sum()) if low < 0 else 0
                    mask_full_scale(low, peak, negative, None, what)
        return value if dtype is None or value.dtype == dtype else value.to(dtype)
    data, _ = input_values(value, what, role)
    if device is None and isinstance(value, torch.Tensor):
        device = value.device
    return torch.from_numpy(data).to(device=device, dtype=dtype or torch.float32)


def shifted_mask_bands(mask, step: int = DEFAULT_STEP, axis: Axis = DEFAULT_AXIS) -> int | None:
    """The band count C a 3-D shifted mask shows by its layout, or None (a 2-D aperture, or no layout found).

    A shifted mask for C bands at ``step`` is ``H×W'×C`` or ``C×H×W'`` (``W' = W + step·(C−1)``, the sheared side
    along ``axis``): its first band leaves the last ``step·(C−1)`` columns dark and its last band the first ones.
    An end axis whose planes show that is taken as the band axis; the last axis is tried first.
    """
    t = _as_tensor(mask)
    if t.dim() != 3:
        return None
    disp_dim = -1 if axis == "width" else -2  # in C × H × W' terms
    for phi in (t.permute(2, 0, 1), t):
        bands = phi.shape[0]
        spread = step * (bands - 1)
        if bands < 2 or phi.shape[disp_dim] <= spread:
            continue
        first, last = phi[0].movedim(disp_dim, -1), phi[-1].movedim(disp_dim, -1)  # dispersion last
        if not first[..., -spread:].any() and not last[..., :spread].any():
            return int(bands)
    return None


def _positive_whole(value) -> bool:
    """Whether ``value`` is a whole number ≥ 1 (Python or numpy integers, integral floats; not booleans)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value)) and int(value) == value and value >= 1


def check_settings(bands: int, step: int, axis: str) -> None:
    """Validate the physics settings (band count, dispersion step, axis); ShapeError otherwise."""
    if not _positive_whole(bands):
        raise ShapeError(f"bands must be a positive integer, got {bands!r}")
    if not _positive_whole(step):
        raise ShapeError(f"dispersion step must be a positive integer number of pixels, got {step!r}")
    if axis not in _AXES:
        raise ShapeError(f"dispersion axis must be 'width' or 'height', got {axis!r}")


def _arrays_in_arrays_out(what: str):
    """Let an operator method take a numpy array (or nested list) as well as a tensor: the array is converted
    (native byte order; integers as float32; other dtypes kept) onto the operator's device, and the result comes
    back as a numpy array. Tensors go through untouched, autograd included. ``what`` names the input in errors."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, value, *args, **kwargs):
            if isinstance(value, torch.Tensor):
                return method(self, value, *args, **kwargs)
            args = tuple(a if a is None or isinstance(a, torch.Tensor) else torch.from_numpy(a) for a in args)
            if kwargs.get("out") is not None and not isinstance(kwargs["out"], torch.Tensor):
                kwargs["out"] = torch.from_numpy(kwargs["out"])  # written in place: the array sees the result
            tensor = _as_tensor(value, what).to(self.band_mask.device)
            return method(self, tensor, *args, **kwargs).detach().cpu().numpy()

        return wrapper

    return decorate


class CassiOperator(torch.nn.Module):
    """Single-disperser CASSI operator ``A`` with its exact adjoint ``A_adjoint``.

    Args:
        mask: the coded aperture, in one of these forms (numpy array or tensor, any float/int dtype):

            * 2-D ``H × W`` aperture ``M`` (grey-level values are kept as they are);
            * 3-D shifted mask Φ as ``H × W' × C`` (the field's ``mask_3d_shift.mat``) or ``C × H × W'``;
              with ``axis="height"`` the sheared dimension is the height instead (``H' × W × C`` / ``C × H' × W``);
            * 4-D batch: ``B × 1 × H × W`` apertures or ``B × C × H × W'`` shifted masks, one per sample.

            Which form was given is reported by :attr:`mask_form` (``"aperture"`` or ``"shifted"``).
        bands: number of spectral bands ``C``.
        step: dispersion in pixels per band.
        axis: ``"width"`` (the field's default) or ``"height"``.

    Cubes are ``B × C × H × W`` (or ``C × H × W``), measurements ``B × H × W'`` (or ``H × W'``) for the width
    axis and ``B × H' × W`` for the height axis. Values are used as given: the operator does not normalise.
    An unbatched input gives an unbatched result.

    Batches: an operator made from one mask (:attr:`batch` 1) serves inputs of any batch size. One made from a
    batch of ``N`` masks pairs mask ``i`` with sample ``i``: its inputs need a batch dimension of ``N`` (or 1,
    which is then taken through all ``N`` masks and gives ``N`` results). Any other batch size, and an unbatched
    input, is a :class:`ShapeError` (an unbatched input would need ``N`` results, not one).

    :meth:`A`, :meth:`A_adjoint`, :meth:`A_A_adjoint` and :meth:`shift_back` take torch tensors or numpy arrays
    and answer in kind: a tensor gives a tensor (on the input's device, autograd kept), a numpy array a numpy
    array (computed on the operator's device; integer input as float32, float64 kept).
    """

    def __init__(self, mask, bands: int = DEFAULT_BANDS, step: int = DEFAULT_STEP, axis: Axis = DEFAULT_AXIS,
                 check_values: bool = True):
        super().__init__()
        check_settings(bands, step, axis)
        self.bands = int(bands)
        self.step = int(step)
        self.axis = axis
        tensor = _as_tensor(mask)
        if tensor.numel() == 0:
            raise ShapeError(f"mask is empty (shape {_fmt_shape(tuple(tensor.shape))}); expected a non-empty coded "
                             "aperture")
        # The value checks read the mask back to the host; a training loop that made its masks itself skips
        # them (check_values=False) so a GPU never waits for them.
        if check_values and not torch.isfinite(tensor).all():
            raise ValueRangeError("mask holds NaN or Inf values; expected finite transmission values")
        band_masks, form = self._to_band_masks(tensor)
        if check_values and not band_masks.abs().amax() > 0:
            raise ValueRangeError("mask is all zero; expected a coded aperture with open pixels")
        self.mask_form: str = form
        # Per-band effective masks in the un-sheared frame, stored with the dispersion along the last axis:
        # B × (1 or C) × H × W. An aperture is one mask shared by every band.
        self.register_buffer("band_mask", band_masks, persistent=False)

    # ----------------------------------------------------------------------------------------------
    # construction helpers
    def _to_internal(self, t: torch.Tensor) -> torch.Tensor:
        """Swap the two spatial axes when dispersing along the height, so internals always shear the last axis."""
        return t.transpose(-1, -2) if self.axis == "height" else t

    def _shifted_band_count(self, t: torch.Tensor) -> int | None:
        """The band count a 3-D shifted mask of another band count shows by its layout, else None."""
        bands = shifted_mask_bands(t, self.step, self.axis)
        return bands if bands != self.bands else None

    def _to_band_masks(self, t: torch.Tensor) -> tuple[torch.Tensor, str]:
        c, s = self.bands, self.step
        spread = s * (c - 1)
        if t.dim() == 2:
            return self._to_internal(t)[None, None].contiguous(), "aperture"
        if t.dim() == 3:
            disp_dim = -1 if self.axis == "width" else -2  # in C × H × W' terms
            candidates = []
            if t.shape[-1] == c:  # H × W' × C
                candidates.append(t.permute(2, 0, 1))
            if t.shape[0] == c:  # C × H × W'
                candidates.append(t)
            candidates = [p for p in candidates if p.shape[disp_dim] > spread]
            if not candidates:
                other = self._shifted_band_count(t)
                hint = (f" (it looks like a mask for {other} bands: pass --bands {other} (Python: bands={other}))"
                        if other else "")
                raise ShapeError(
                    f"3-D mask of shape {tuple(t.shape)} is not a shifted mask for {c} bands at step {s} along the "
                    f"{self.axis}: expected H×W'×{c} or {c}×H×W' with W' > {spread}{hint}"
                )
            phi = candidates[0]
            return self._phi_to_band_masks(self._to_internal(phi)[None]), "shifted"
        if t.dim() == 4:
            if t.shape[1] == 1:
                return self._to_internal(t).contiguous(), "aperture"
            if t.shape[1] == c:
                return self._phi_to_band_masks(self._to_internal(t)), "shifted"
            raise ShapeError(
                f"4-D mask of shape {tuple(t.shape)}: expected B×1×H×W apertures or B×{c}×H×W' shifted masks"
            )
        raise ShapeError(f"mask has {t.dim()} dimensions; expected a 2-D aperture or a 3-D shifted mask")

    def _phi_to_band_masks(self, phi: torch.Tensor) -> torch.Tensor:
        """B × C × H × W' (sheared along the last axis) -> per-band windows B × C × H × W, validated."""
        c, s = self.bands, self.step
        width = unsheared_size(phi.shape[-1], c, s)
        if width < 1:
            raise ShapeError(
                f"shifted mask is {phi.shape[-1]} pixels along the {self.axis}, too narrow for {c} bands at step {s}"
            )
        windows = shift_back(phi, c, s, width)  # B × C × C × H × W: band b's window of every Φ_k
        band_masks = torch.diagonal(windows, dim1=1, dim2=2).permute(0, 3, 1, 2).contiguous()
        total = phi.abs().sum()
        inside = band_masks.abs().sum()
        if total > 0 and (total - inside) > 1e-4 * total:
            raise ShapeError(
                f"3-D mask does not look shifted by {s} px per band along the {self.axis}: "
                f"{100 * float((total - inside) / total):.1f}% of its energy lies outside the band windows; "
                "check --bands, --step and --axis (Python: bands=, step=, axis=)"
            )
        return band_masks

    # ----------------------------------------------------------------------------------------------
    # geometry
    @property
    def batch(self) -> int:
        return int(self.band_mask.shape[0])

    @property
    def cube_shape(self) -> tuple[int, int]:
        """(H, W) of the cube."""
        h, w = self.band_mask.shape[-2:]
        return (int(w), int(h)) if self.axis == "height" else (int(h), int(w))

    @property
    def measurement_shape(self) -> tuple[int, int]:
        """(H, W') of the measurement (or (H', W) when dispersing along the height)."""
        h, w = self.cube_shape
        if self.axis == "height":
            return sheared_size(h, self.bands, self.step), w
        return h, sheared_size(w, self.bands, self.step)

    def describe(self) -> dict:
        """Physics settings as plain data (for records and file metadata)."""
        return {
            "bands": self.bands,
            "dispersion_step": self.step,
            "dispersion_axis": self.axis,
            "cube_shape": list(self.cube_shape),
            "measurement_shape": list(self.measurement_shape),
            "mask_form": self.mask_form,
        }

    def check_cube(self, cube: torch.Tensor) -> None:
        """ShapeError unless ``cube`` fits the mask: its bands and size, and its batch against the masks'."""
        expected = (self.bands, *self.cube_shape)
        if cube.dim() not in (3, 4) or tuple(cube.shape[-3:]) != expected:
            raise ShapeError(
                f"cube of shape {tuple(cube.shape)} does not fit the mask: expected "
                f"{'×'.join(map(str, expected))} (bands × height × width), optionally with a batch dimension"
            )
        self._check_batch(cube, 3, "cube")

    def check_measurement(self, measurement: torch.Tensor) -> None:
        """ShapeError unless ``measurement`` fits the mask: its size, and its batch against the masks'."""
        self._check_measurement_size(measurement)
        self._check_batch(measurement, 2, "measurement")

    def _check_measurement_size(self, measurement: torch.Tensor) -> None:
        expected = self.measurement_shape
        if measurement.dim() not in (2, 3) or tuple(measurement.shape[-2:]) != expected:
            h, w = self.cube_shape
            raise ShapeError(
                f"measurement of shape {tuple(measurement.shape)} does not fit the mask: a {h}×{w} mask with "
                f"{self.bands} bands at step {self.step} along the {self.axis} needs a "
                f"{expected[0]}×{expected[1]} measurement"
            )

    def _check_batch(self, t: torch.Tensor, unbatched_dim: int, what: str) -> None:
        """An input's batch against the masks' (see the class docstring): equal, or either one 1."""
        masks = self.band_mask.shape[0]
        if masks == 1:
            return
        if t.dim() == unbatched_dim:
            raise ShapeError(
                f"{what} of shape {tuple(t.shape)} has no batch dimension, but the operator holds a batch of "
                f"{masks} masks (one per sample): pass a batch of {masks} {what}s"
            )
        if t.shape[0] not in (1, masks):
            raise ShapeError(
                f"batch of {t.shape[0]} {what}s does not fit the operator's batch of {masks} masks (one per "
                f"sample): expected a batch of {masks} (or 1)"
            )

    # ----------------------------------------------------------------------------------------------
    # the operator
    def _masks_for(self, x: torch.Tensor) -> torch.Tensor:
        return self.band_mask.to(device=x.device, dtype=x.dtype)

    @_arrays_in_arrays_out("cube")
    def A(self, cube: torch.Tensor) -> torch.Tensor:
        """Forward model: cube ``B×C×H×W`` -> measurement ``B×H×W'``."""
        self.check_cube(cube)
        unbatched = cube.dim() == 3
        x = self._to_internal(cube[None] if unbatched else cube)
        y = self._to_internal(shear(x, self.step, self._masks_for(x)))
        return y[0] if unbatched else y

    @_arrays_in_arrays_out("measurement")
    def A_adjoint(self, measurement: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Adjoint: measurement ``B×H×W'`` -> cube ``B×C×H×W`` (``M ⊙ shift_back(r)``).

        ``out``: a cube of the result's shape to write into (iterative solvers reuse one buffer)."""
        self.check_measurement(measurement)
        unbatched = measurement.dim() == 2
        r = self._to_internal(measurement[None] if unbatched else measurement)
        width = r.shape[-1] - self.step * (self.bands - 1)
        target = None
        if out is not None:
            batch = max(r.shape[0], self.band_mask.shape[0])
            expected = (self.bands, *self.cube_shape) if unbatched else (batch, self.bands, *self.cube_shape)
            if tuple(out.shape) != expected:
                raise ShapeError(
                    f"out of shape {tuple(out.shape)} does not fit the adjoint's result: expected "
                    f"{'×'.join(map(str, expected))}"
                )
            target = self._to_internal(out[None] if unbatched else out)
        x = torch.mul(shift_back(r, self.bands, self.step, width), self._masks_for(r), out=target)
        x = self._to_internal(x)
        return x[0] if unbatched else x

    @_arrays_in_arrays_out("measurement")
    def A_A_adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        """``A Aᵀ r``; for CASSI this is diagonal: ``Φs ⊙ r`` (Φs without the zero replacement)."""
        self.check_measurement(measurement)
        phi_s = self.phi_s(replace_zeros=False).to(measurement)
        return phi_s[0] * measurement if measurement.dim() == 2 else phi_s * measurement

    @_arrays_in_arrays_out("measurement")
    def shift_back(self, measurement: torch.Tensor) -> torch.Tensor:
        """Un-shear a measurement into ``B×C×H×W`` without applying the mask (the field's ``shift_back``); the
        masks are not used, so any batch size goes."""
        self._check_measurement_size(measurement)
        unbatched = measurement.dim() == 2
        r = self._to_internal(measurement[None] if unbatched else measurement)
        width = r.shape[-1] - self.step * (self.bands - 1)
        x = self._to_internal(shift_back(r, self.bands, self.step, width))
        return x[0] if unbatched else x

    def band_masks(self) -> torch.Tensor:
        """The mask seen by each band in the cube frame, ``B×C×H×W`` (the networks' "3-D mask" input)."""
        b = self.band_mask
        return self._to_internal(b.expand(b.shape[0], self.bands, *b.shape[-2:]))

    def phi(self) -> torch.Tensor:
        """The shifted 3-D mask Φ, ``B×C×H×W'``."""
        b = self.band_mask.expand(self.batch, self.bands, *self.band_mask.shape[-2:])
        c, s = self.bands, self.step
        out = b.new_zeros(*b.shape[:-1], sheared_size(b.shape[-1], c, s))
        w = b.shape[-1]
        for k in range(c):
            out[:, k, :, s * k : s * k + w] = b[:, k]
        return self._to_internal(out)

    def phi_s(self, replace_zeros: bool = True) -> torch.Tensor:
        """Φs = Σ_b Φ_b², ``B×H×W'``; zeros replaced by 1 unless ``replace_zeros=False`` (as GAP divides by it)."""
        b = self.band_mask
        squared = (b * b).expand(b.shape[0], self.bands, *b.shape[-2:])
        phi_s = self._to_internal(shear(squared, self.step))
        if replace_zeros:
            phi_s = torch.where(phi_s == 0, torch.ones_like(phi_s), phi_s)
        return phi_s

    # ----------------------------------------------------------------------------------------------
    # windows, for tiling large captures
    def crop(self, top: int, left: int, height: int, width: int) -> "CassiOperator":
        """The operator of the cube tile ``[top:top+height, left:left+width]`` (its own mask crop)."""
        h, w = self.cube_shape
        if top < 0 or left < 0 or top + height > h or left + width > w or height < 1 or width < 1:
            raise ShapeError(f"tile {height}×{width} at ({top}, {left}) lies outside the {h}×{w} cube")
        masks = self._to_internal(self.band_mask)[..., top : top + height, left : left + width]
        return self._with_band_mask(self._to_internal(masks))

    def mirrored(self) -> "CassiOperator":
        """The operator of the mirrored capture: the cube and the mask flipped across the dispersion (rows reversed
        for the width axis, columns for the height axis). Lines along the dispersion never mix, so
        ``mirrored().A(mirror(x)) == mirror(A(x))`` exactly; self-ensembles use it (:meth:`mirror`)."""
        return self._with_band_mask(self.band_mask.flip(-2))

    def mirror(self, t: torch.Tensor) -> torch.Tensor:
        """Flip a cube (``…×H×W``) or a measurement across the dispersion, as :meth:`mirrored` flips the mask."""
        return t.flip(-1 if self.axis == "height" else -2)

    def _with_band_mask(self, band_mask: torch.Tensor) -> "CassiOperator":
        """An operator with these settings and internal-frame band masks (already validated)."""
        other = CassiOperator.__new__(CassiOperator)
        torch.nn.Module.__init__(other)
        other.bands, other.step, other.axis, other.mask_form = self.bands, self.step, self.axis, self.mask_form
        other.register_buffer("band_mask", band_mask.contiguous(), persistent=False)
        return other

    def measurement_window(self, measurement: torch.Tensor, top: int, left: int, height: int, width: int):
        """The part of the measurement that the cube tile ``[top:top+height, left:left+width]`` disperses onto:
        ``height × (width + step·(C−1))`` (or the transposed window for the height axis)."""
        spread = self.step * (self.bands - 1)
        if self.axis == "height":
            return measurement[..., top : top + height + spread, left : left + width]
        return measurement[..., top : top + height, left : left + width + spread]

    def extra_repr(self) -> str:
        h, w = self.cube_shape
        return f"bands={self.bands}, step={self.step}, axis={self.axis!r}, cube={h}×{w}, mask_form={self.mask_form!r}"


def shear(cube: torch.Tensor, step: int, masks: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_b shift_b(cube_b ⊙ masks_b) along the last axis: ``B×C×H×W`` -> ``B×H×(W+step·(C−1))``.

    ``masks`` (``B×1×H×W`` or ``B×C×H×W``, optional) is multiplied in band by band, so no masked copy of the
    cube is made (7× faster on a 660² capture than masking first)."""
    bands, width = cube.shape[-3], cube.shape[-1]
    batch = cube.shape[:-3] if masks is None else torch.broadcast_shapes(cube.shape[:-3], masks.shape[:-3])
    out = cube.new_zeros(*batch, cube.shape[-2], sheared_size(width, bands, step))
    for b in range(bands):
        window = out[..., step * b : step * b + width]
        if masks is None:
            window += cube[..., b, :, :]
        else:
            window.addcmul_(cube[..., b, :, :], masks[..., b if masks.shape[-3] > 1 else 0, :, :])
    return out


def shift_back(measurement: torch.Tensor, bands: int, step: int, width: int) -> torch.Tensor:
    """Band ``b`` = ``measurement[..., step·b : step·b + width]``: ``...×H×W'`` -> ``...×C×H×width`` (a view)."""
    windows = measurement.unfold(-1, width, step)  # ... × H × n × width, n ≥ bands
    return windows[..., :bands, :].movedim(-2, -3)


def as_operator(
    mask,
    measurement: torch.Tensor,
    bands: int = DEFAULT_BANDS,
    step: int = DEFAULT_STEP,
    axis: Axis = DEFAULT_AXIS,
) -> CassiOperator:
    """The operator for ``model(measurement, mask)`` calls.

    ``mask`` may be a :class:`CassiOperator` (returned as is), a 2-D aperture, a ``B×H×W`` batch of apertures
    (one per measurement in the batch), a 3-D shifted mask, or a 4-D batch form. The measurement decides the
    one ambiguous case: a 3-D mask whose spatial size is the cube size of the measurement is a batch of
    apertures.
    """
    if isinstance(mask, CassiOperator):
        return mask
    t = _as_tensor(mask)
    if t.dim() == 3 and measurement.dim() == 3:
        h, w = measurement.shape[-2:]
        if axis == "height":
            cube_hw = (unsheared_size(h, bands, step), w)
        else:
            cube_hw = (h, unsheared_size(w, bands, step))
        if t.shape[0] == measurement.shape[0] and tuple(t.shape[-2:]) == cube_hw:
            t = t[:, None]
    op = CassiOperator(t.to(measurement.device), bands=bands, step=step, axis=axis)
    op.check_measurement(measurement)
    return op
