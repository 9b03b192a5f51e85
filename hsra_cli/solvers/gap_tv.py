"""GAP-TV: generalized alternating projection with total-variation denoising (Yuan, ICIP 2016).

A solver that needs no weights, on the project's one :class:`~hsra_cli.physics.CassiOperator`. Each iteration
projects onto the measurement constraint (the Euclidean projection is cheap because A Aᵀ = diag(Φs)) and then
denoises with total variation (Chambolle's dual projection, isotropic in space, per band). The accelerated
variant feeds back the running residual, which converges faster on CASSI data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ..bands import DEFAULT_AXIS, DEFAULT_BANDS, DEFAULT_STEP
from ..errors import ShapeError, UsageError
from ..physics import CassiOperator, as_operator, network_input
from ..registry import register_model


@dataclass(frozen=True)
class GapTvConfig:
    iterations: int = 80
    #: TV weight, relative to the cube's value range; halved along the schedule below.
    tv_weight: float = 0.08
    #: Iterations after which the TV weight is reduced (coarse-to-fine).
    tv_decay_every: int = 20
    tv_decay: float = 0.7
    #: Inner iterations of Chambolle's projection per outer iteration.
    tv_iterations: int = 5
    accelerate: bool = True
    #: Φs below this fraction of its median is raised to it, and there the accelerated target does not accumulate
    #: the residual: where the mask passes almost no light (the dim edge of a grey-level real mask), an exact fit
    #: amplifies noise and stray light without bound. Without it GAP-TV put values up to 54 into a real capture
    #: (TSA scene 5; 13–22 into the other four); at 0.02, at most 2.4 in all five, and the simulated benchmark
    #: cases move by at most 0.004 dB (docs/training.md). 0: exact projection everywhere.
    phi_floor: float = 0.02
    #: TV weight on the correction to the starting cube (``x − init``), applied before the TV on the cube itself:
    #: the estimate stays the starting cube plus a piecewise-smooth change that makes it explain the measurement.
    #: Only when the iterations start from ``init``; 0: none (plain GAP-TV).
    correction_tv_weight: float = 0.0


def _grad_into(u: torch.Tensor, gh: torch.Tensor, gw: torch.Tensor) -> None:
    """Forward differences of ``u`` along height and width into ``gh``/``gw`` (Neumann boundary: last one 0)."""
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=gh[..., :-1, :])
    gh[..., -1, :] = 0
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=gw[..., :, :-1])
    gw[..., :, -1] = 0


def _div_into(ph: torch.Tensor, pw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Divergence of (ph, pw) into ``out``: the negative adjoint of the forward differences."""
    out[..., 0, :] = ph[..., 0, :]
    torch.sub(ph[..., 1:-1, :], ph[..., :-2, :], out=out[..., 1:-1, :])
    torch.neg(ph[..., -2, :], out=out[..., -1, :])
    out[..., :, 0] += pw[..., :, 0]
    out[..., :, 1:-1] += pw[..., :, 1:-1]
    out[..., :, 1:-1] -= pw[..., :, :-2]
    out[..., :, -1] -= pw[..., :, -2]
    return out


#: Which TV implementation runs on the CPU: ``auto`` (numba when installed), ``numba`` or ``torch``. Set by the
#: environment variable ``HSRA_TV_BACKEND``; CUDA tensors always use the torch loop.
TV_BACKEND_VARIABLE = "HSRA_TV_BACKEND"


def _numba_kernels():
    """The compiled TV kernels, or None when numba is missing or switched off."""
    import os

    choice = os.environ.get(TV_BACKEND_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in ("auto", "numba", "torch"):
        raise ValueError(f"{TV_BACKEND_VARIABLE}={choice!r}; expected auto, numba or torch")
    if choice == "torch":
        return None
    try:
        from . import _tv_numba
    except ImportError:
        if choice == "numba":
            raise
        return None
    return _tv_numba


def tv_backend(image: torch.Tensor) -> str:
    """``"numba"`` or ``"torch"``: the implementation :func:`tv_denoise` uses for ``image``."""
    usable = image.device.type == "cpu" and image.dtype == torch.float32
    return "numba" if usable and _numba_kernels() is not None else "torch"


def _tv_numba(image: torch.Tensor, weight: float, iterations: int, dual, out: torch.Tensor,
              threads: int | None = None) -> tuple:
    import numba

    kernels = _numba_kernels()
    torch_threads = torch.get_num_threads()
    threads = threads or torch_threads
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    h, w = image.shape[-2:]
    if dual is None:
        dual = (torch.zeros_like(image), torch.zeros_like(image))
    ph, pw = dual
    flat = image.reshape(-1, h, w).numpy()
    qh, qw = ph.reshape(-1, h, w).numpy(), pw.reshape(-1, h, w).numpy()
    kernels.chambolle_dual(flat, qh, qw, np.float32(weight), int(iterations), np.float32(0.25))
    kernels.subtract_divergence(flat, qh, qw, np.float32(weight), out.reshape(-1, h, w).numpy())
    if torch.get_num_threads() != torch_threads:  # numba's OpenMP layer resets the shared OpenMP thread count
        torch.set_num_threads(torch_threads)
    return out, dual


def tv_denoise(image: torch.Tensor, weight: float, iterations: int = 5, dual=None, out: torch.Tensor | None = None,
               threads: int | None = None):
    """Isotropic TV denoising of each 2-D slice of ``image`` (…×H×W, H and W ≥ 2) by Chambolle's projection.

    Solves min_u ½‖u − f‖² + weight·TV(u). ``dual`` warm-starts the dual variables; it is updated in place and
    returned with the result so outer loops can carry it. ``out`` (may be ``image`` itself) receives the result.

    On the CPU (float32) the loop runs as fused, band-parallel code compiled by numba (:mod:`._tv_numba`), about
    6× faster than the torch loop, which remains for CUDA and when numba is missing; both compute the same
    (``HSRA_TV_BACKEND=torch`` forces the torch loop). ``threads``: threads of the compiled loop (default: torch's).
    """
    if weight <= 0:
        if out is not None and out is not image:
            out.copy_(image)
            return out, dual
        return image, dual
    if image.shape[-2] < 2 or image.shape[-1] < 2:
        h, w = image.shape[-2:]
        raise ShapeError(f"total variation needs a cube of at least 2×2 pixels, got {h}×{w}")
    if tv_backend(image) == "numba":
        contiguous = image.is_contiguous() and (dual is None or all(d.is_contiguous() for d in dual))
        if contiguous and (out is None or out.is_contiguous()):
            return _tv_numba(image, weight, iterations, dual, torch.empty_like(image) if out is None else out,
                             threads)
    result, dual = _tv_denoise_torch(image, weight, iterations, dual)
    if out is not None:
        out.copy_(result)
        return out, dual
    return result, dual


def _tv_denoise_torch(image: torch.Tensor, weight: float, iterations: int, dual):
    """The torch loop: works in four preallocated buffers (it is bound by memory traffic: about 4× faster than
    allocating each intermediate)."""
    tau = 0.25
    if dual is None:
        ph = torch.zeros_like(image)
        pw = torch.zeros_like(image)
    else:
        ph, pw = dual
    scaled = image / weight
    work, gh, gw, denom = (torch.empty_like(image) for _ in range(4))
    for _ in range(iterations):
        _grad_into(_div_into(ph, pw, work).sub_(scaled), gh, gw)
        torch.hypot(gh, gw, out=denom).mul_(tau).add_(1)
        ph.add_(gh, alpha=tau).div_(denom)
        pw.add_(gw, alpha=tau).div_(denom)
    return image - weight * _div_into(ph, pw, work), (ph, pw)


class GapTV(torch.nn.Module):
    """GAP-TV as a model: ``model(measurement, mask) -> cube B×C×H×W``; no trainable weights.

    The measurement is in field scale (plain sum of the masked, sheared bands). The result is in the cube's
    value range (≈[0,1] for simulated data); nothing is clipped.
    """

    def __init__(
        self,
        bands: int = DEFAULT_BANDS,
        step: int = DEFAULT_STEP,
        axis: str = DEFAULT_AXIS,
        **config,
    ):
        super().__init__()
        self.bands, self.step, self.axis = bands, step, axis
        known = {f.name for f in fields(GapTvConfig)}
        unknown = sorted(set(config) - known)
        if unknown:  # as the networks' HsraConfig.from_dict refuses them
            raise UsageError(f"unknown GAP-TV configuration keys: {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))} (and the physics: bands, step, axis)")
        self.config = GapTvConfig(**config)
        #: Called as ``on_iteration(done, total)`` after each iteration (progress bars); None: not called.
        self.on_iteration = None

    def example_inputs(self, height: int, width: int):
        mask = (torch.rand(height, width) > 0.5).float()
        op = CassiOperator(mask, self.bands, self.step, self.axis)
        return op.A(torch.rand(1, self.bands, height, width)), mask

    @torch.no_grad()
    def forward(self, measurement: torch.Tensor, mask, init: torch.Tensor | None = None) -> torch.Tensor:
        """``init`` (``B×C×H×W``) starts the iterations from another estimate, e.g. a network's (see
        :func:`refine`); by default they start from Aᵀ(y / Φs). Numpy arrays are taken as a network takes them
        (:func:`hsra_cli.physics.network_input`: checked and scaled as ``hsra reconstruct`` does files)."""
        if not isinstance(measurement, torch.Tensor):
            measurement = network_input(measurement, "measurement", "measurement")
        if not isinstance(mask, (torch.Tensor, CassiOperator)):
            mask = network_input(mask, "mask", "mask", device=measurement.device)
        if measurement.dim() == 2:  # one H×W' measurement -> one C×H×W cube, as the networks answer it
            return self.forward(measurement[None], mask, None if init is None else init[None])[0]
        op = as_operator(mask, measurement, self.bands, self.step, self.axis)
        cfg = self.config
        y = measurement
        phi_s = op.phi_s().to(y)
        lit = None  # measurement pixels lit well enough to be fitted exactly (None: all)
        if cfg.phi_floor > 0:
            floor = cfg.phi_floor * float(phi_s.median())
            lit = (phi_s >= floor).to(y)
            phi_s = phi_s.clamp(min=floor)
        if init is None:
            x = op.A_adjoint(y / phi_s)
        else:
            op.check_cube(init)
            x = init.to(y).clone()
        x = x.contiguous()
        anchor = x.clone() if init is not None and self.config.correction_tv_weight > 0 else None
        threads = torch.get_num_threads()
        if tv_backend(x) == "numba" and threads > 1:
            # The projections are a few dozen light, memory-bound torch ops per iteration; split over threads,
            # each one waits at a barrier for the slowest thread, which on a busy machine costs more than the op
            # (hundreds of ms per iteration measured here). They run on one thread, the compiled TV on all.
            torch.set_num_threads(1)
            try:
                return self._iterate(y, op, x, phi_s, threads, anchor, init is not None, lit)
            finally:
                torch.set_num_threads(threads)
        return self._iterate(y, op, x, phi_s, None, anchor, init is not None, lit)

    def _iterate(self, y, op, x, phi_s, tv_threads, anchor=None, warm=False, lit=None):
        cfg = self.config
        # Accelerated GAP accumulates the residual into the target it projects onto. Started from another estimate
        # (``warm``), the target starts at that estimate's own measurement, so the first step is a plain projection
        # rather than one that first undoes the estimate. The target accumulates only where the mask passes enough
        # light (``lit``, from ``phi_floor``): where it passes almost none, fitting the measurement exactly would
        # take huge values (a real capture, TSA scene 5: up to 12.7 refined and 54 by GAP-TV alone, against at most
        # 2.2 and 2.0 this way), so the estimate is left to the prior there.
        residual_sum = op.A(x) if warm and cfg.accelerate else torch.zeros_like(y)
        update = torch.empty_like(x)  # reused every iteration: no cube-sized allocation inside the loop
        weight = cfg.tv_weight
        dual = correction_dual = None
        for it in range(cfg.iterations):
            if it and cfg.tv_decay_every and it % cfg.tv_decay_every == 0:
                weight *= cfg.tv_decay
            predicted = op.A(x)
            if cfg.accelerate:
                residual_sum += (y - predicted) if lit is None else (y - predicted) * lit
                x.add_(op.A_adjoint((residual_sum - predicted) / phi_s, out=update))
            else:
                x.add_(op.A_adjoint((y - predicted) / phi_s, out=update))
            if anchor is not None:  # x ← anchor + TV(x − anchor): the correction is denoised, not the cube
                x.sub_(anchor)
                x, correction_dual = tv_denoise(x, cfg.correction_tv_weight, cfg.tv_iterations, correction_dual,
                                                out=x, threads=tv_threads)
                x.add_(anchor)
            x, dual = tv_denoise(x, weight, cfg.tv_iterations, dual, out=x, threads=tv_threads)
            if self.on_iteration is not None:
                self.on_iteration(it + 1, cfg.iterations)
        return x

    def describe(self) -> dict:
        return asdict(self.config)


#: The refinement after a network (``hsra reconstruct --refine``): accelerated GAP started from the network's cube,
#: each iteration TV-denoising first the *correction* to that cube (weight REFINE_CORRECTION_TV_WEIGHT), then the
#: cube itself, lightly (REFINE_TV_WEIGHT), with a damped projection where Φs is small (below REFINE_PHI_FLOOR of
#: its median: the near-dark edge of a grey-level mask, the first and last columns the dispersion reaches). Without
#: a floor, the earlier plain refinement put values up to 17 into a real capture (TSA scene 1); accelerated, with
#: the earlier floor of 0.05, up to 6.6 there; with 0.2, up to 3.3, at no cost on the tuning scenes (within
#: 0.002 dB). Below the floor the accelerated target does not accumulate either (see GapTV._iterate): 2.4 there,
#: and 2.2 on TSA scene 5 (12.7 otherwise).
#:
#: Denoising the correction keeps what the network got right (texture, fine detail) and lets the measurement fix
#: what it got wrong with a piecewise-smooth change; TV on the cube alone (the earlier default: 10 plain iterations
#: at 0.003) had to stay light, since heavier TV pulled the cube towards GAP-TV's own, worse, estimate.
#: Chosen on tuning data only (``benchmarks/bench_refine.py``: procedural scenes no recipe trains on, each through a
#: random binary mask, the KAIST mask and a window of the real mask, noiseless and with shot noise); with
#: hsra-dum-2stg.any, mean gain over the network alone, binary / KAIST / real window: noiseless +1.71 / +0.82 /
#: +0.90 dB (the earlier default: +0.42 / +0.19 / +0.22), shot noise +2.58 / +1.75 / +1.80 (+1.33 / +1.00 /
#: +1.06); no tuning scene lost PSNR or SSIM. docs/training.md, "Refinement that corrects the network", has the
#: sweep and the held-out numbers.
REFINE_TV_WEIGHT = 0.005
REFINE_CORRECTION_TV_WEIGHT = 0.05
#: A last, stronger TV denoising of the cube (Chambolle, REFINE_FINAL_TV_ITERATIONS iterations): the accelerated
#: projections put some measurement noise back into the cube at every iteration, most visibly as spectral noise in
#: dark regions. On the tuning scenes it cost 0.04–0.08 dB noiseless and gained 0.07–0.10 dB with shot noise, and
#: improved SSIM with noise and the spectral angle (SAM) everywhere.
REFINE_FINAL_TV_WEIGHT = 0.01
REFINE_FINAL_TV_ITERATIONS = 20
#: Iterations run after a network by default; about 0.6 s per 256² cube on one CPU thread.
DEFAULT_REFINE = 20
REFINE_PHI_FLOOR = 0.2
#: What a model card that lacks a refinement field measured with: cards exported before the TV weight was recorded
#: used 0.01; before 2026-12-01 the refinement had no TV on the correction and no final TV.
LEGACY_REFINE_FIELDS = {"refine_tv_weight": 0.01, "refine_correction_tv_weight": 0.0, "refine_final_tv_weight": 0.0}


def refine_card_fields(iterations: int = DEFAULT_REFINE) -> dict:
    """The refinement as model cards (``validation``) record it beside their refined numbers."""
    return {"refine": int(iterations), "refine_tv_weight": REFINE_TV_WEIGHT,
            "refine_correction_tv_weight": REFINE_CORRECTION_TV_WEIGHT, "refine_final_tv_weight": REFINE_FINAL_TV_WEIGHT}


def refine_settings(iterations: int = DEFAULT_REFINE) -> dict:
    """The refinement as reconstruction records state it."""
    return {"iterations": int(iterations), "tv_weight": REFINE_TV_WEIGHT,
            "correction_tv_weight": REFINE_CORRECTION_TV_WEIGHT, "final_tv_weight": REFINE_FINAL_TV_WEIGHT,
            "method": "accelerated GAP from the network's cube: TV on the correction, then on the cube; a final TV"}


def describe_refine(fields: dict) -> str:
    """A card's refinement fields (:func:`refine_card_fields`) in words: ``"20 accelerated iterations, TV weight
    0.05 on the correction and 0.005 on the cube, then a final TV at 0.01"``, or for the earlier plain refinement
    ``"10 iterations at TV weight 0.003"``."""
    fields = {**LEGACY_REFINE_FIELDS, **fields}
    iterations, weight = fields.get("refine", "?"), fields["refine_tv_weight"]
    correction, final = fields["refine_correction_tv_weight"], fields["refine_final_tv_weight"]
    if not correction:
        return f"{iterations} iterations at TV weight {weight:g}"
    return (f"{iterations} accelerated iterations, TV weight {correction:g} on the correction and {weight:g} on the cube"
            + (f", then a final TV at {final:g}" if final else ""))


def refine(cube: torch.Tensor, measurement: torch.Tensor, op: CassiOperator, iterations: int,
           tv_weight: float = REFINE_TV_WEIGHT, correction_tv_weight: float = REFINE_CORRECTION_TV_WEIGHT,
           accelerate: bool = True, final_tv_weight: float = REFINE_FINAL_TV_WEIGHT) -> torch.Tensor:
    """GAP iterations started from ``cube`` (``B×C×H×W``, e.g. a network's output) that make it explain the
    measurement.

    Each iteration projects the estimate onto the measurement constraint A x = y (exactly, since A Aᵀ is diagonal;
    the residual is accumulated as accelerated GAP does), TV-denoises the correction ``x − cube`` and then, lightly,
    the cube; a last TV denoising (``final_tv_weight``) ends it. ``iterations`` 0 returns ``cube`` unchanged.
    ``correction_tv_weight`` 0, ``final_tv_weight`` 0 and ``accelerate`` False give the earlier default: plain
    GAP-TV from ``cube`` (10 iterations at TV weight 0.003).
    """
    if iterations < 0:
        raise ValueError(f"refine iterations must be >= 0, got {iterations}")
    if iterations == 0:
        return cube
    solver = GapTV(op.bands, op.step, op.axis, iterations=int(iterations), tv_weight=float(tv_weight),
                   tv_decay_every=0, accelerate=accelerate, phi_floor=REFINE_PHI_FLOOR,
                   correction_tv_weight=float(correction_tv_weight))
    out = solver(measurement, op, init=cube)
    if final_tv_weight > 0:
        out, _ = tv_denoise(out.contiguous(), float(final_tv_weight), REFINE_FINAL_TV_ITERATIONS)
    return out


@register_model(
    "gap-tv",
    aliases=("gaptv",),
    description="GAP-TV iterative solver (no weights; Yuan 2016)",
    kind="solver",
    needs_weights=False,
    config=asdict(GapTvConfig()),
)
def gap_tv(**kwargs) -> GapTV:
    return GapTV(**kwargs)
