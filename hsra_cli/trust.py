"""Where can a reconstruction be trusted? The measurement residual, brought back to the scene.

With no ground truth (a real capture of an unknown scene) the one thing a reconstruction can be checked against
is its own measurement: a cube x̂ that is right reproduces y through the operator, ``A x̂ ≈ y``. The residual
``|A x̂ − y|`` lives on the sensor, where each pixel mixes the light of ``bands`` scene pixels along the dispersion
axis; :func:`trust_map` brings it back to scene coordinates by averaging it over each scene pixel's dispersion
footprint (the measurement pixels its bands land on: :meth:`CassiOperator.shift_back`, the mask-free adjoint),
and normalises it by the measurement's root mean square, so that values read as a fraction of a typical
measurement value.

When a network's cube is refined (``hsra reconstruct`` does so by default), the refinement makes it explain the
measurement almost exactly, so the map is computed from the network's cube before refinement: that residual shows
where the scene and the network's prior disagreed, which is also where the refinement had to change the cube most.
The record says which cube the map is of (``residual_map.cube``) and its scalar residual (``residual_map.residual``).

A small residual does not prove a reconstruction right (many cubes explain one snapshot); a large one shows where
it is wrong: where the scene breaks the prior, where the geometry or the mask is off, where the sensor was
saturated or hit by something the model does not know.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .physics import CassiOperator

#: Percentiles of the trust map kept in the JSON record.
PERCENTILES = (50, 90, 99)
MAP_DEFINITION = ("|A x̂ − y| / rms(y), averaged over each scene pixel's dispersion footprint "
                  "(the measurement pixels its bands land on)")


@torch.inference_mode()
def measurement_residual(op: CassiOperator, cube: torch.Tensor, measurement: torch.Tensor) -> tuple[float, np.ndarray]:
    """The scalar residual ‖A x̂ − y‖/‖y‖ and the trust map (``H × W`` float32, scene coordinates).

    Args:
        op: the operator of the capture.
        cube: the reconstruction ``C × H × W`` (or ``1 × C × H × W``) in the measurement's scale.
        measurement: ``H × W'`` (or ``1 × H × W'``), as the reconstruction saw it (normalised).
    """
    x = cube if cube.dim() == 4 else cube[None]
    y = measurement if measurement.dim() == 3 else measurement[None]
    y = y.to(x.dtype)
    difference = (op.A(x) - y)[0]
    norm_y = torch.linalg.vector_norm(y).clamp(min=1e-12)
    scalar = float(torch.linalg.vector_norm(difference) / norm_y)
    rms = norm_y / max(y.numel(), 1) ** 0.5
    footprint = op.shift_back((difference.abs() / rms)[None])[0]  # C × H × W: the residual each band landed on
    trust = footprint.mean(dim=0)
    return scalar, trust.float().cpu().numpy()


def map_statistics(trust: np.ndarray) -> dict:
    """Percentiles (and mean, max) of a trust map, for records and reports."""
    values = np.asarray(trust, dtype=np.float64)
    stats = {f"p{p}": round(float(np.percentile(values, p)), 6) for p in PERCENTILES}
    stats["mean"] = round(float(values.mean()), 6)
    stats["max"] = round(float(values.max()), 6)
    stats["definition"] = MAP_DEFINITION
    return stats


def residual_figure(trust: np.ndarray, residual: float, title: str | None = None, of: str | None = None):
    """The trust map as a figure: a colour map clipped at its 99.5th percentile, with a colour bar and the scalar
    residual in the title (``of``: which cube the map was computed from, when not the reconstruction itself, e.g.
    the network's cube before refinement). Drawn with the Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .render import quiet_missing_glyphs

    quiet_missing_glyphs()  # a title with characters the font lacks (a CJK file name) draws boxes, silently
    values = np.asarray(trust, dtype=np.float64)
    height, width = values.shape
    aspect = width / max(height, 1)
    figure = Figure(figsize=(min(4.0 * aspect, 9.0) + 1.2, 4.2))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    top = float(np.percentile(values, 99.5))
    image = ax.imshow(values, cmap="magma", vmin=0.0, vmax=top if top > 0 else 1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    label = f"residual ‖Ax̂−y‖/‖y‖ = {residual:.4f}" + (f"\n(of {of})" if of else "")
    ax.set_title(f"{title}: {label}" if title else label, fontsize=9)
    bar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("|Ax̂−y| / rms(y), footprint mean", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def write_residual_map(path, trust: np.ndarray, residual: float, title: str | None = None,
                       overwrite: bool = False, of: str | None = None) -> Path:
    """Write ``<stem>_residual.png`` (atomically; an existing file only with ``overwrite``)."""
    from .render import save_png

    return save_png(path, residual_figure(trust, residual, title, of), overwrite)
