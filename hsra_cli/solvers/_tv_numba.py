"""Chambolle's TV projection as fused loops compiled by numba: the CPU fast path of :func:`gap_tv.tv_denoise`.

The torch loop in :mod:`hsra_cli.solvers.gap_tv` streams about 37 floats per voxel through memory per inner
iteration (each elementwise op is a pass over the cube); here one pass per iteration reads the dual variables and
the image row by row and writes the duals back, keeping two rows of the divergence in cache, and the bands run on
separate threads. Same arithmetic as the torch loop (Jacobi update, Neumann boundaries), to float rounding.

Imported only when used (numba compiles on first use and caches the machine code next to this file, or in
numba's user cache when that folder is not writable; with neither writable, a read-only install under a read-only
home, it compiles on every run instead of failing).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def _cached_njit(**options):
    """``njit(cache=True, **options)``, or without the cache where numba finds no writable place for it (it
    raises when the function is decorated): the compiled code is then rebuilt once per process (≈5 s)."""

    def decorate(function):
        try:
            return njit(cache=True, **options)(function)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            return njit(cache=False, **options)(function)

    return decorate


@njit(inline="always", fastmath=True, boundscheck=False)
def _divergence(qh, qw, i, j, height, width):  # pragma: no cover - compiled
    """div(p)[i, j]: the negative adjoint of forward differences with Neumann boundaries (last difference 0)."""
    if i == 0:
        dv = qh[0, j]
    elif i < height - 1:
        dv = qh[i, j] - qh[i - 1, j]
    else:
        dv = -qh[i - 1, j]
    if j == 0:
        dv += qw[i, 0]
    elif j < width - 1:
        dv += qw[i, j] - qw[i, j - 1]
    else:
        dv -= qw[i, j - 1]
    return dv


@_cached_njit(parallel=True, fastmath=True, boundscheck=False)
def chambolle_dual(image, ph, pw, weight, iterations, tau):  # pragma: no cover - compiled
    """Update the dual variables ``ph``, ``pw`` (n × H × W, float32, in place) of min ½‖u − f‖² + weight·TV(u)
    for each of the n slices of ``image``, by ``iterations`` steps of Chambolle's projection."""
    n, height, width = image.shape
    for k in prange(n):
        f = image[k]
        qh = ph[k]
        qw = pw[k]
        cur = np.empty(width, np.float32)
        nxt = np.empty(width, np.float32)
        for _ in range(iterations):
            # Row 0 of (div p − f/weight); then, row by row, compute the next row before updating this one, so
            # every update reads the duals of the previous iteration.
            for j in range(width):
                cur[j] = _divergence(qh, qw, 0, j, height, width) - f[0, j] / weight
            for i in range(height):
                if i + 1 < height:
                    for j in range(width):
                        nxt[j] = _divergence(qh, qw, i + 1, j, height, width) - f[i + 1, j] / weight
                for j in range(width):
                    gh = nxt[j] - cur[j] if i + 1 < height else np.float32(0.0)
                    gw = cur[j + 1] - cur[j] if j + 1 < width else np.float32(0.0)
                    denominator = np.float32(1.0) + tau * np.sqrt(gh * gh + gw * gw)
                    qh[i, j] = (qh[i, j] + tau * gh) / denominator
                    qw[i, j] = (qw[i, j] + tau * gw) / denominator
                cur, nxt = nxt, cur


@_cached_njit(parallel=True, fastmath=True, boundscheck=False)
def subtract_divergence(image, ph, pw, weight, out):  # pragma: no cover - compiled
    """``out = image − weight · div(p)`` (``out`` may be ``image``)."""
    n, height, width = image.shape
    for k in prange(n):
        for i in range(height):
            for j in range(width):
                out[k, i, j] = image[k, i, j] - weight * _divergence(ph[k], pw[k], i, j, height, width)
