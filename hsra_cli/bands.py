"""The band list: the one home for wavelengths in the project.

The field's CASSI benchmark (KAIST scenes as cropped by TSA-Net, and the TSA-Net real prototype) uses
28 bands between 453.5 and 648 nm.
"""

from __future__ import annotations

import numpy as np

#: Centre wavelengths (nm) of the field's standard 28 bands.
CASSI28_WAVELENGTHS_NM: tuple[float, ...] = (
    453.5, 457.5, 462.0, 466.0, 471.5, 476.5, 481.5, 487.0, 492.5, 498.0, 504.0, 510.0, 516.0, 522.5,
    529.5, 536.5, 544.0, 551.5, 558.5, 567.5, 575.5, 584.5, 594.5, 604.0, 614.5, 625.0, 636.5, 648.0,
)

DEFAULT_BANDS = 28
DEFAULT_STEP = 2
DEFAULT_AXIS = "width"


def default_wavelengths(bands: int = DEFAULT_BANDS) -> np.ndarray:
    """Wavelengths (nm) for ``bands`` bands.

    28 bands give the field's list. Other counts are spread evenly over the same 453.5–648 nm range, which is
    what a user gets unless their file or ``--wavelengths`` says otherwise.
    """
    if bands == len(CASSI28_WAVELENGTHS_NM):
        return np.asarray(CASSI28_WAVELENGTHS_NM, dtype=np.float64)
    if bands < 1:
        raise ValueError(f"band count must be positive, got {bands}")
    if bands == 1:
        return np.asarray([550.0])
    return np.linspace(CASSI28_WAVELENGTHS_NM[0], CASSI28_WAVELENGTHS_NM[-1], bands)
