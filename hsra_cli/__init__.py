"""hsra: hyperspectral reconstruction from coded-aperture snapshot captures (CASSI)."""

__version__ = "0.1.0"

from .physics import CassiOperator  # noqa: E402

__all__ = ["CassiOperator", "__version__"]
