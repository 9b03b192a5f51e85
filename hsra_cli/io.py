"""Reading and writing cubes, measurements and masks: the one home of file formats in ``hsra``.

Formats, chosen by the file's suffix (case-insensitive):

* ``.mat`` — MATLAB v5 (scipy) and MATLAB v7.3 (HDF5, read with h5py). v7.3 is recognised by the HDF5
  signature, not by scipy's error. MATLAB stores arrays column-major, so h5py sees every v7.3 variable with
  its axes reversed; they are reversed back here, so a MATLAB ``H×W×C`` variable reads as ``H×W×C``.
* ``.h5`` / ``.hdf5`` — plain HDF5, datasets found recursively (``"group/name"`` keys), never transposed.
* ``.tif`` / ``.tiff`` — tifffile; a multi-page stack reads as ``pages × H × W`` (our cubes: ``C × H × W``).
* ``.npy`` / ``.npz`` — NumPy with ``allow_pickle=False``: nothing a user hands over is ever unpickled.

Values come back as stored, except a mask's. Cubes (:func:`read_cube`, :func:`read_array`) come back as
float32, integer data not rescaled (the original dtype is reported in
``metadata["integer_dtype"]``; :func:`unit_range` brings it to [0, 1]). Measurements (:func:`read_measurement`)
keep an integer file's integer type (float data comes back as float32), so :class:`hsra_cli.Reconstructor`,
``model(measurement, mask)`` and :func:`unit_range` all see that it is integer and scale it by its full scale, as
``hsra reconstruct`` does. Masks (:func:`read_mask`) come back as float32 transmission in [0, 1]: an integer mask
beyond 0/1 is scaled (:func:`mask_full_scale`, noted in ``metadata["mask_scaled_by"]``). Cubes are returned
``H × W × C`` (layout detected by :func:`to_hwc`), measurements ``H × W'``, masks in their stored layout (2-D
aperture ``H × W`` or 3-D shifted mask).

Every file the project writes goes through :func:`atomic_output`: the data lands in a temporary file next to
the target and is renamed over it only once complete, and an existing file is never replaced without
``overwrite=True``.

Heavy readers (scipy.io, h5py, tifffile) are imported inside the functions that need them, so importing this
module (e.g. for :func:`check_writable` in the CLI) stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import AmbiguousArrayError, HsraError, InputFileError, KeyChoiceError, OutputExistsError, ShapeError, UsageError, ValueRangeError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "CUBE_KEYS",
    "MEASUREMENT_KEYS",
    "MASK_KEYS",
    "LoadedArray",
    "list_arrays",
    "read_array",
    "read_cube",
    "read_measurement",
    "read_mask",
    "to_hwc",
    "write_cube",
    "write_array",
    "atomic_output",
    "check_writable",
    "output_format",
    "declared_shape",
    "remove_stale_temporaries",
]

SUPPORTED_SUFFIXES = (".mat", ".h5", ".hdf5", ".tif", ".tiff", ".npy", ".npz")
#: Usual variable names, in priority order, for each role (the field's files use these).
CUBE_KEYS = ("cube", "truth", "img", "hsi", "recon", "pred", "x", "data")
#: A reconstruction's names first: the field's result files (MST's Test_result.mat) hold ``pred`` beside ``truth``.
PREDICTION_KEYS = ("pred", "recon", "cube", "img", "hsi", "x", "data")
#: Names that say which of the two an array is: a file holding both is ambiguous where the role does not say.
_PREDICTION_NAMES, _TRUTH_NAMES = frozenset({"pred", "recon"}), frozenset({"truth"})
MEASUREMENT_KEYS = ("meas", "meas_real", "measurement", "y", "img", "data")
MASK_KEYS = ("mask", "mask_3d_shift", "Phi", "phi", "mask3d", "data")

#: Names that only one role uses: a file whose one array carries another role's name was given in the wrong place.
_ROLE_ONLY_NAMES = {
    "cube": ("cube", "truth", "hsi", "recon", "pred"),
    "measurement": ("meas", "meas_real", "measurement"),
    "mask": ("mask", "mask_3d_shift", "Phi", "phi", "mask3d"),
}
_ROLE_LABELS = {"cube": "a cube", "measurement": "a measurement", "mask": "a mask"}
_OTHER_ROLE_NAMES = {
    role: {name: ("a coded aperture" if other == "mask" else _ROLE_LABELS[other])
           for other, names in _ROLE_ONLY_NAMES.items() if other != role for name in names}
    for role in _ROLE_ONLY_NAMES
}
# a prediction and a truth are cubes, read the way a cube is, with their own name priorities
_OTHER_ROLE_NAMES["prediction"] = _OTHER_ROLE_NAMES["truth"] = _OTHER_ROLE_NAMES["cube"]
_ROLE_LABELS["prediction"] = _ROLE_LABELS["truth"] = _ROLE_LABELS["cube"]
_ROLE_HINTS = {
    "cube": "expected a hyperspectral cube (H×W×C)",
    "measurement": "give masks with --mask and captures as inputs",
    "mask": "--mask expects the coded aperture, the captures go as inputs",
}
_ROLE_HINTS["prediction"] = _ROLE_HINTS["truth"] = _ROLE_HINTS["cube"]

_FORMATS = {
    ".mat": "mat", ".h5": "h5", ".hdf5": "h5", ".tif": "tif", ".tiff": "tif", ".npy": "npy", ".npz": "npz",
}
_FORMAT_LABELS = {
    "mat": "a MATLAB file", "mat73": "a MATLAB v7.3 (HDF5) file", "h5": "an HDF5 file", "tif": "a TIFF file",
    "npy": "a NumPy .npy file", "npz": "a NumPy .npz archive",
}
_ROLE_KEYS = {
    "cube": CUBE_KEYS,
    "prediction": PREDICTION_KEYS,
    "truth": CUBE_KEYS,
    "measurement": MEASUREMENT_KEYS,
    "mask": MASK_KEYS,
    "any": tuple(dict.fromkeys(CUBE_KEYS + MEASUREMENT_KEYS + MASK_KEYS)),
}
#: Variables that describe an array rather than being one: never picked automatically.
_WAVELENGTH_NAMES = ("wavelengths_nm", "wavelengths")
_META_NAME = "hsra_meta"
_METADATA_NAMES = frozenset(_WAVELENGTH_NAMES + (_META_NAME,))

#: scipy's MATLAB v5 writer cannot store a variable of 2 GiB or more; larger arrays go to v7.3.
_MAT_V5_LIMIT_BYTES = 2**31
_MAT73_USERBLOCK = 512
_MATLAB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_MATLAB_CLASSES = {
    np.dtype(np.float32): "single", np.dtype(np.float64): "double",
}
#: v7.3 groups MATLAB uses for its own bookkeeping (cell contents, object data), not user variables.
_MAT73_PRIVATE_GROUPS = ("#refs#", "#subsystem#")
_NUMBER_TYPES = (int, float, np.integer, np.floating)
#: The temporary files of :func:`atomic_output`: ``.<target name>.<12 hex digits>.tmp``.
_TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{12}\.tmp$")
#: What our temporaries become; a hidden file of the same pattern for anything else is not ours.
_WRITTEN_SUFFIXES = frozenset(SUPPORTED_SUFFIXES + (".png", ".json", ".csv", ".md", ".safetensors"))
#: An unlocked temporary untouched for this long belongs to no running writer (a live one is locked within
#: microseconds of its creation, and its writer keeps changing it until it is renamed); younger ones are only reported.
STALE_TEMPORARY_SECONDS = 10.0

try:  # POSIX: temporaries are locked while written, so a later run can tell live ones from leftovers
    import fcntl
except ImportError:  # pragma: no cover - Windows: leftovers are reported, never removed
    fcntl = None


@dataclass
class LoadedArray:
    """One array read from a file.

    Attributes:
        data: float32 array, values as stored (integers are not rescaled), oriented as MATLAB/NumPy shows it
            (MATLAB v7.3 axes already reversed back). C-contiguous. From :func:`read_measurement`, integer data
            keeps its integer type (native byte order).
        key: the variable/dataset name used (``"group/name"`` inside HDF5 groups or MATLAB structs; ``""`` for
            ``.npy`` and TIFF files, which hold one unnamed array).
        path: the file it came from.
        metadata: what the file says about the array, when stored: ``wavelengths_nm`` (list of floats), our
            JSON metadata (e.g. ``bands``, ``dispersion_step``), ``integer_dtype`` (e.g. ``"uint8"``) for
            integer data, ``axes`` (e.g. ``"CYX"``) for TIFF files that record it.
    """

    data: np.ndarray
    key: str
    path: Path
    metadata: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------
# small helpers


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(int(n)) for n in shape) if len(shape) else "scalar"


def _fmt_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def _memory_available() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, or the cgroup's remaining limit when lower;
    None where neither can be read (then sizes are not checked)."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            remaining = max(0, int(limit) - int(used))
            available = remaining if available is None else min(available, remaining)
    except (OSError, ValueError):
        pass
    return available


#: Bytes per element of each MATLAB class (scipy.io.whosmat), to check a v5 file's declared sizes.
_MATLAB_ITEMSIZE = {
    "double": 8, "single": 4, "int8": 1, "uint8": 1, "logical": 1, "int16": 2, "uint16": 2, "char": 2,
    "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "sparse": 0,
}


def _check_fits(where, arrays: list[tuple[tuple[int, ...], int]]) -> None:
    """Refuse before loading when the arrays a file declares (shape, bytes per element) would not fit in memory.

    Each element is counted with its float32 copy: a damaged or hostile header declaring an enormous shape gets a
    one-line error instead of an out-of-memory crash or a long swap storm."""
    need = sum(math.prod(int(n) for n in shape) * (itemsize + 4) for shape, itemsize in arrays if itemsize)
    available = _memory_available()
    if available is not None and need > available:
        largest = max((shape for shape, itemsize in arrays if itemsize), key=lambda s: math.prod(int(n) for n in s))
        raise InputFileError(
            f"{where} declares {'an array' if len(arrays) == 1 else 'arrays'} of {_fmt_shape(largest)} needing "
            f"{_fmt_bytes(need)} to read, more than the {_fmt_bytes(available)} of memory available; "
            "expected a smaller array (or the file is damaged)"
        )


def _os_reason(exc: OSError) -> str:
    """Why the system refused, without the paths it names (a temporary file's name means nothing to a user)."""
    return exc.strerror or _short_reason(exc)


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _suffix_format(path: Path) -> str | None:
    return _FORMATS.get(path.suffix.lower())


def _unsupported(path: Path, doing: str) -> UsageError:
    suffix = path.suffix or "(no suffix)"
    return UsageError(
        f"cannot {doing} {path}: unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def _path_argument(path, doing: str) -> Path:
    """``path`` (a ``str`` or ``os.PathLike``) as a :class:`~pathlib.Path`; a :class:`UsageError` saying what is
    expected for anything else (``None``, a number, an array)."""
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise UsageError(f"cannot {doing} {path!r}: path= must be a file path (a str or pathlib.Path), "
                     f"got {type(path).__name__}")


def output_format(path) -> str:
    """``"mat" | "h5" | "tif" | "npy" | "npz"`` from the suffix of ``path``; :class:`UsageError` otherwise."""
    target = _path_argument(path, "write")
    fmt = _suffix_format(target)
    if fmt is None:
        raise _unsupported(target, "write")
    return fmt


def _input_path(path) -> tuple[Path, str]:
    source = _path_argument(path, "read")
    fmt = _suffix_format(source)
    if fmt is None:
        raise _unsupported(source, "read")
    if not source.exists():
        if source.is_symlink():  # a link whose target is gone (a share not mounted here)
            raise InputFileError(f"{source} is a link to {os.readlink(source)}, which does not exist")
        raise InputFileError(f"{source} does not exist")
    if source.is_dir():
        raise InputFileError(f"{source} is a folder; expected a {source.suffix} file")
    return source, fmt


def _dtype_kind(dtype: np.dtype) -> str:
    """Classify a dtype: only "numeric" arrays are usable; the rest get named in error messages."""
    if dtype.kind in "biuf":
        return "numeric"
    if dtype.kind == "c":
        return "complex"
    if dtype.kind in "SU":
        return "text"
    if dtype.kind == "V" and dtype.names:
        return "complex" if set(dtype.names) == {"real", "imag"} else "record"
    return "object"


def _text_of(array) -> str | None:
    """A stored string (numpy 'U'/'S' array, bytes, str) as Python text; None if it is not one."""
    if isinstance(array, str):
        return array
    if isinstance(array, bytes):
        return array.decode("utf-8", "replace")
    array = np.asarray(array)
    if array.dtype.kind == "U":
        return "".join(array.ravel().tolist())
    if array.dtype.kind == "S":
        return b"".join(array.ravel().tolist()).decode("utf-8", "replace")
    return None


def _json_object(text: str | None) -> dict:
    # A damaged or foreign hsra_meta must not make the array itself unreadable, so bad JSON is ignored.
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _wavelength_list(array) -> list[float] | None:
    try:
        values = np.asarray(array, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    return [float(v) for v in values]


def _python_value(value):
    """An HDF5/TIFF attribute as a plain JSON-like Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return _python_value(value.item())
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SUO":
            return [_python_value(v) for v in value.ravel().tolist()]
        return value.tolist()
    return value


# ------------------------------------------------------------------------------------------------------
# sources: what a file holds, without loading every array


@dataclass
class _Entry:
    name: str
    shape: tuple[int, ...]
    kind: str  # "numeric" | "complex" | "text" | "record" | "object" | "cell" | "struct" | "sparse" | "empty"
    load: Callable[[], np.ndarray]
    integer_dtype: str | None = None  # original integer dtype, reported so callers can scale (not for logicals)
    itemsize: int = 8  # bytes per stored element, to check a declared size against memory before loading

    def describe(self) -> str:
        if self.kind == "numeric":
            return f"{self.name or '(unnamed)'}: {_fmt_shape(self.shape)}"
        return f"{self.name or '(unnamed)'}: {_fmt_shape(self.shape)} {self.kind}"


@dataclass
class _Source:
    fmt: str  # key of _FORMAT_LABELS
    entries: dict[str, _Entry]
    file_metadata: dict = field(default_factory=dict)  # from hsra_meta / wavelengths variables
    entry_metadata: Callable[[str], dict] = lambda name: {}


def _numeric_entry(name: str, array: np.ndarray, *, logical: bool = False) -> _Entry:
    kind = _dtype_kind(array.dtype)
    if kind == "numeric" and array.size == 0:
        kind = "empty"
    integer = array.dtype.name if array.dtype.kind in "iu" and not logical else None
    return _Entry(name, tuple(array.shape), kind, lambda: array, integer, array.dtype.itemsize)


def _metadata_from_variables(values: dict[str, Any]) -> dict:
    """wavelengths_nm / wavelengths and hsra_meta variables (already loaded) -> metadata dict."""
    meta = _json_object(_text_of(values[_META_NAME])) if _META_NAME in values else {}
    for name in _WAVELENGTH_NAMES:
        if name in values:
            wavelengths = _wavelength_list(values[name])
            if wavelengths is not None:
                meta["wavelengths_nm"] = wavelengths
                break
    return meta


def _open_mat_v5(path: Path) -> _Source:
    import scipy.io
    import scipy.sparse

    # loadmat reads every variable at once: check the sizes the file declares first (headers only).
    _check_fits(path, [(shape, _MATLAB_ITEMSIZE.get(matlab_class, 8)) for _, shape, matlab_class in scipy.io.whosmat(str(path))])
    # squeeze_me stays off: squeezing would turn an H×W×1 cube we wrote into H×W and break round-trips,
    # and MATLAB itself never stores trailing singleton dimensions anyway.
    contents = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    logical: set[str] = set()
    if any(isinstance(v, np.ndarray) and v.dtype == np.uint8 for v in contents.values()):
        # scipy returns MATLAB logicals as uint8; only the class list tells them apart from real uint8 data,
        # and reporting integer_dtype="uint8" for a 0/1 mask would invite a wrong /255 scaling.
        logical = {name for name, _, matlab_class in scipy.io.whosmat(str(path)) if matlab_class == "logical"}
    entries: dict[str, _Entry] = {}

    def add(name: str, value) -> None:
        if scipy.sparse.issparse(value):
            entries[name] = _Entry(name, tuple(value.shape), "sparse", lambda: value)
        elif not isinstance(value, np.ndarray):
            entries[name] = _Entry(name, (), "object", lambda: value)
        elif value.dtype.names and value.size == 1:
            # A 1×1 struct: expose its fields as "struct/field", as h5py shows a v7.3 struct.
            for field_name in value.dtype.names:
                add(f"{name}/{field_name}", value[field_name].ravel()[0])
        elif value.dtype.names:
            entries[name] = _Entry(name, tuple(value.shape), "struct", lambda: value)
        elif value.dtype.kind == "O":
            entries[name] = _Entry(name, tuple(value.shape), "cell", lambda: value)
        else:
            entries[name] = _numeric_entry(name, value, logical=value.dtype.kind == "b" or name in logical)

    for name, value in contents.items():
        if not name.startswith("__"):  # __header__, __version__, __globals__
            add(name, value)
    meta = _metadata_from_variables({k: v for k, v in contents.items() if k in _METADATA_NAMES})
    return _Source("mat", entries, meta)


def _h5_attr_text(attrs, name: str) -> str | None:
    if name not in attrs:
        return None
    value = attrs[name]
    return _text_of(value) if not isinstance(value, np.ndarray) or value.dtype.kind in "SU" else None


def _open_hdf5(path: Path, handle, matlab: bool) -> _Source:
    """Walk every dataset of an open h5py file. ``matlab``: v7.3 rules (reverse axes, MATLAB_class)."""
    import h5py

    entries: dict[str, _Entry] = {}

    def visit(name: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        if matlab and name.split("/", 1)[0] in _MAT73_PRIVATE_GROUPS:
            return
        dataset: h5py.Dataset = obj
        shape = tuple(dataset.shape)
        if matlab:
            shape = shape[::-1]

        def load(ds=dataset):
            array = ds[()]
            return np.asarray(array).T if matlab else np.asarray(array)

        matlab_class = (_h5_attr_text(dataset.attrs, "MATLAB_class") or "") if matlab else ""
        if h5py.check_string_dtype(dataset.dtype) is not None:
            kind = "text"
        elif h5py.check_ref_dtype(dataset.dtype) is not None:
            kind = "cell" if matlab_class == "cell" else "object"
        else:
            kind = _dtype_kind(dataset.dtype)
        if matlab and matlab_class == "char":
            kind = "text"
        if matlab and "MATLAB_empty" in dataset.attrs and dataset.attrs["MATLAB_empty"]:
            # MATLAB stores an empty variable as its dimension list, not as data.
            kind, shape = "empty", (0,)
        elif kind == "numeric" and dataset.size == 0:
            kind = "empty"
        integer = None
        if kind == "numeric" and dataset.dtype.kind in "iu" and matlab_class != "logical":
            integer = dataset.dtype.name
        entries[name] = _Entry(name, shape, kind, load, integer, dataset.dtype.itemsize)

    handle.visititems(visit)

    def read_text(name: str) -> str | None:
        entry = entries.get(name)
        if entry is None or entry.kind != "text":
            return None
        raw = entry.load()
        if matlab and raw.dtype.kind in "iu":  # MATLAB char: UTF-16 code units
            return "".join(chr(int(c)) for c in raw.ravel())
        return _text_of(raw)

    file_values: dict[str, Any] = {}
    for name in _WAVELENGTH_NAMES:
        if name in entries and entries[name].kind == "numeric":
            file_values[name] = entries[name].load()
    meta_text = read_text(_META_NAME)
    if meta_text is not None:
        file_values[_META_NAME] = meta_text
    file_meta = _metadata_from_variables(file_values)

    def entry_metadata(name: str) -> dict:
        if matlab:
            return {}
        attrs = handle[name].attrs
        meta_text = _h5_attr_text(attrs, _META_NAME)
        if meta_text is not None:
            # Our writer also stores each entry as its own attribute for people browsing the file;
            # hsra_meta is the exact copy, so it wins.
            meta = _json_object(meta_text)
        else:
            meta = {}
            for attr_name in attrs:
                if attr_name in _WAVELENGTH_NAMES:
                    continue
                try:
                    meta[attr_name] = _python_value(attrs[attr_name])
                except (OSError, TypeError, ValueError):  # attribute types h5py cannot read: skip them
                    continue
        for attr_name in _WAVELENGTH_NAMES:
            source_attrs = attrs if attr_name in attrs else handle.attrs
            if attr_name in source_attrs:
                wavelengths = _wavelength_list(source_attrs[attr_name])
                if wavelengths is not None:
                    meta["wavelengths_nm"] = wavelengths
                    break
        return meta

    return _Source("mat73" if matlab else "h5", entries, file_meta, entry_metadata)


def _open_tiff(path: Path, handle) -> _Source:
    if not handle.series:
        raise InputFileError(f"{path} holds no image")
    series = handle.series[0]
    array_shape = tuple(series.shape)
    dtype = np.dtype(series.dtype)
    kind = _dtype_kind(dtype)
    integer = dtype.name if dtype.kind in "iu" else None
    entries = {"": _Entry("", array_shape, kind, series.asarray, integer, dtype.itemsize)}
    meta: dict = {}
    shaped = handle.shaped_metadata
    if shaped:
        description = shaped[0]
        stored_meta = description.get(_META_NAME)
        if isinstance(stored_meta, str):
            meta.update(_json_object(stored_meta))
        wavelengths = _wavelength_list(description["wavelengths_nm"]) if "wavelengths_nm" in description else None
        if wavelengths is not None:
            meta["wavelengths_nm"] = wavelengths
        axes = description.get("axes")
        if isinstance(axes, str) and len(axes) == len(array_shape):
            meta["axes"] = axes
    return _Source("tif", entries, meta)


def _npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, without reading (or unpickling) the data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    return tuple(shape), np.dtype(dtype)


def _npy_entry(name: str, shape, dtype: np.dtype, load) -> _Entry:
    kind = "object" if dtype.hasobject else _dtype_kind(dtype)
    if kind == "numeric" and math.prod(shape) == 0:
        kind = "empty"
    integer = dtype.name if dtype.kind in "iu" else None
    return _Entry(name, shape, kind, load, integer, dtype.itemsize)


def _open_npy(path: Path) -> _Source:
    with open(path, "rb") as stream:
        shape, dtype = _npy_header(stream)
    entry = _npy_entry("", shape, dtype, lambda: np.load(path, allow_pickle=False))
    return _Source("npy", {"": entry})


def _open_npz(path: Path, archive) -> _Source:
    entries: dict[str, _Entry] = {}
    for name in archive.files:
        with archive.zip.open(f"{name}.npy") as stream:
            shape, dtype = _npy_header(stream)
        entries[name] = _npy_entry(name, shape, dtype, lambda n=name: archive[n])
    values = {n: entries[n].load() for n in _METADATA_NAMES if n in entries and entries[n].kind != "object"}
    return _Source("npz", entries, _metadata_from_variables(values))


@contextlib.contextmanager
def _quiet_readers() -> Iterator[None]:
    """Silence the reader libraries while they read: they report damaged files through log lines (tifffile) and
    warnings (scipy, numpy casts), and hsra reports each problem as its own one-line error instead."""
    logger = logging.getLogger("tifffile")
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = was_disabled


@contextlib.contextmanager
def _open_source(path: Path, fmt: str) -> Iterator[_Source]:
    """Open ``path`` and describe its arrays; turns any reader failure into a one-line InputFileError."""
    label_fmt = fmt
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_quiet_readers())
            if fmt == "mat":
                import h5py

                if h5py.is_hdf5(str(path)):
                    label_fmt = "mat73"
                    handle = stack.enter_context(h5py.File(str(path), "r"))
                    source = _open_hdf5(path, handle, matlab=True)
                else:
                    source = _open_mat_v5(path)
            elif fmt == "h5":
                import h5py

                handle = stack.enter_context(h5py.File(str(path), "r"))
                source = _open_hdf5(path, handle, matlab=False)
            elif fmt == "tif":
                import tifffile

                handle = stack.enter_context(tifffile.TiffFile(str(path)))
                source = _open_tiff(path, handle)
            elif fmt == "npy":
                source = _open_npy(path)
            else:
                # Our own file object, closed by the stack: np.load leaks its own when the archive is damaged.
                stream = stack.enter_context(open(path, "rb"))
                magic = stream.read(6)
                stream.seek(0)
                if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # else np.load tries pickle
                    raise ValueError("it starts with neither a zip nor a .npy header; expected a file written by "
                                     "numpy.savez")  # said as every damaged file is, below
                archive = np.load(stream, allow_pickle=False)
                if not isinstance(archive, np.lib.npyio.NpzFile):  # np.load also accepts a bare .npy
                    raise InputFileError(f"{path} is a single .npy array, not a .npz archive; rename it to .npy")
                stack.enter_context(archive)
                source = _open_npz(path, archive)
            yield source
    except (HsraError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - readers raise many types on damaged files; report them all alike
        raise InputFileError(f"cannot read {path} as {_FORMAT_LABELS[label_fmt]}: {_short_reason(exc)}") from exc


# ------------------------------------------------------------------------------------------------------
# reading


def _listing(entries: list[_Entry]) -> str:
    return ", ".join(entry.describe() for entry in entries)


def _choose_key(path: Path, source: _Source, key: str | None, role: str) -> str:
    entries = source.entries
    if key:
        wanted = key.lstrip("/") if source.fmt in ("h5", "mat73") else key
        if wanted in entries:
            return wanted
        held = _listing(list(entries.values())) or "no arrays"
        raise InputFileError(f"{path} has no array named {key!r}; it holds {held}")
    candidates = [entry for name, entry in entries.items() if name not in _METADATA_NAMES]
    names = {entry.name for entry in candidates}
    if role == "cube" and names & _PREDICTION_NAMES and names & _TRUTH_NAMES:
        # a result file (pred beside truth) read where either could be meant: say so rather than guess
        both = [entry for entry in candidates if entry.name in _PREDICTION_NAMES | _TRUTH_NAMES]
        raise AmbiguousArrayError(path, _listing(both), "--key")
    for usual in _ROLE_KEYS[role]:
        if usual in names:
            return usual
    numeric = [entry for entry in candidates if entry.kind == "numeric"]
    if len(numeric) == 1:
        other = _OTHER_ROLE_NAMES.get(role, {}).get(numeric[0].name)
        if other:  # e.g. the mask.mat `hsra simulate` writes, given as a capture
            raise KeyChoiceError(
                f"{path} holds {other} ({numeric[0].name!r}), not {_ROLE_LABELS[role]}; "
                f"{_ROLE_HINTS[role]} (or pass {{option}} {numeric[0].name} if it really is {_ROLE_LABELS[role]})",
                "--mask-key" if role == "mask" else "--key",
            )
        return numeric[0].name
    if not numeric:
        if not entries:
            raise InputFileError(f"{path} holds no arrays")
        if len(candidates) == 1:  # the file's one array: let the caller's check say what is wrong with it
            return candidates[0].name
        raise InputFileError(f"{path} holds no numeric array (it holds {_listing(list(entries.values()))})")
    raise AmbiguousArrayError(path, _listing(numeric), "--mask-key" if role == "mask" else "--key")


def _where(path: Path, key: str) -> str:
    return f"{path} ({key!r})" if key else str(path)


def _usable_float32(array, path: Path, entry: _Entry, check_finite: bool = True,
                    keep_integers: bool = False) -> np.ndarray:
    """The array as C-contiguous float32, checked; with ``keep_integers``, integer data (not logicals) keeps its
    integer type, in native byte order."""
    where = _where(path, entry.name)
    if entry.kind == "complex":
        raise ValueRangeError(f"{where} holds complex numbers; expected real values")
    if entry.kind == "empty":
        raise InputFileError(f"{where} is empty; expected a non-empty numeric array")
    if entry.kind == "object":
        raise InputFileError(f"{where} holds Python objects, which hsra never unpickles; expected a numeric array")
    if entry.kind != "numeric":
        raise InputFileError(f"{where} holds {entry.kind} data, not a numeric array")
    stored = np.asarray(array)
    if stored.size == 0:  # e.g. a TIFF whose header declares a zero-length axis
        raise InputFileError(f"{where} is empty (shape {_fmt_shape(stored.shape)}); expected a non-empty numeric array")
    if stored.dtype.kind == "f" and check_finite:
        bad = int(stored.size - np.count_nonzero(np.isfinite(stored)))
        if bad:
            raise ValueRangeError(f"{where} holds {bad} NaN/Inf values; expected finite numbers")
    if keep_integers and entry.integer_dtype and stored.dtype.kind in "iu":
        return np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("="))
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.ascontiguousarray(stored, dtype=np.float32)
    if not check_finite:  # the caller checks the parts it uses (the scenes of a stack)
        return data
    # Finite float64 values beyond float32's range become Inf in the conversion: say so, not "NaN/Inf".
    beyond = int(data.size - np.count_nonzero(np.isfinite(data)))
    if beyond:
        largest = float(np.max(np.abs(stored[np.isfinite(stored)])))
        raise ValueRangeError(
            f"{where} holds {beyond} values beyond the float32 range (up to {largest:.3g}; float32 ends at "
            f"{float(np.finfo(np.float32).max):.3g}); expected values in the data's units, e.g. [0, 1]"
        )
    return data


def list_arrays(path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every numeric array in ``path`` (MATLAB orientation for .mat files).

    Metadata arrays such as ``wavelengths_nm`` are included; text, cells, structs and complex data are not.
    ``.npy`` and TIFF files hold one unnamed array, listed under ``""``.
    """
    source_path, fmt = _input_path(path)
    with _open_source(source_path, fmt) as source:
        return {name: entry.shape for name, entry in source.entries.items() if entry.kind == "numeric"}


def declared_shape(path, key: str | None = None, role: str = "any") -> tuple[int, ...]:
    """The shape of the array :func:`read_array` would read (same key choice), from the file's headers where the
    format allows (HDF5, v7.3, TIFF, NumPy; MATLAB v5 files are read whole). MATLAB orientation for .mat."""
    if role not in _ROLE_KEYS:
        raise ValueError(f"role must be one of {', '.join(_ROLE_KEYS)}, got {role!r}")
    source_path, fmt = _input_path(path)
    with _open_source(source_path, fmt) as source:
        return tuple(source.entries[_choose_key(source_path, source, key, role)].shape)


def read_array(path, key: str | None = None, role: str = "any", check_finite: bool = True) -> LoadedArray:
    """Read one numeric array from ``path`` as float32.

    Args:
        path: a file with one of :data:`SUPPORTED_SUFFIXES`.
        key: variable/dataset name (``"group/name"`` inside HDF5 groups). ``None``: the first of the role's
            usual names present, else the only numeric array in the file.
        role: ``"cube"``, ``"prediction"`` (a reconstruction: ``pred`` first), ``"truth"``, ``"measurement"``,
            ``"mask"`` or ``"any"``: which usual names to look for. A ``"cube"`` read of a file holding both
            ``pred``/``recon`` and ``truth`` is ambiguous (a key is asked for).
        check_finite: refuse NaN/Inf (and values beyond float32). False leaves them for the caller to check
            in the parts it uses (one bad scene of a stack fails that scene alone).

    Returns:
        A :class:`LoadedArray` with the data as stored (values unchanged, no rank check) and its metadata.

    Raises:
        UsageError: unsupported suffix. InputFileError: missing, unreadable, no such key, no numeric array,
        several candidates. ValueRangeError: NaN/Inf or complex values.
    """
    if role not in _ROLE_KEYS:
        raise ValueError(f"role must be one of {', '.join(_ROLE_KEYS)}, got {role!r}")
    return _read_array(path, key, role, check_finite)


def _read_array(path, key: str | None, role: str, check_finite: bool = True,
                keep_integers: bool = False) -> LoadedArray:
    """:func:`read_array`; ``keep_integers``: integer data keeps its type (:func:`read_measurement`)."""
    source_path, fmt = _input_path(path)
    where = str(source_path)
    try:
        with _open_source(source_path, fmt) as source:
            name = _choose_key(source_path, source, key, role)
            entry = source.entries[name]
            where = _where(source_path, name)
            raw = None
            if entry.kind == "numeric":
                _check_fits(where, [(entry.shape, entry.itemsize)])
                raw = entry.load()
                if tuple(np.shape(raw)) != entry.shape:
                    raise InputFileError(
                        f"cannot read {where}: the file declares {_fmt_shape(entry.shape)} but holds "
                        f"{_fmt_shape(np.shape(raw))} (a damaged file?)"
                    )
            metadata = {**source.file_metadata, **source.entry_metadata(name)} if entry.kind == "numeric" else {}
        data = _usable_float32(raw, source_path, entry, check_finite, keep_integers)
    except MemoryError:
        raise InputFileError(f"out of memory reading {where}; expected an array that fits in memory") from None
    if entry.integer_dtype:
        metadata["integer_dtype"] = entry.integer_dtype
    return LoadedArray(data=data, key=name, path=source_path, metadata=metadata)


def _check_bands(bands) -> int:
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or bands < 1:
        raise ShapeError(f"bands must be a positive integer, got {bands!r}")
    return int(bands)


def to_hwc(array, bands: int | None = None) -> np.ndarray:
    """Return a 3-D cube as a C-contiguous float32 ``H × W × C`` array, finding the band axis.

    The band axis is the first or the last axis (``H×W×C`` or ``C×H×W``):

    * ``bands`` given: the axis of that length, the last one preferred when both match;
    * ``bands=None``: an axis of 28 (the field's band count), last preferred; else the smallest axis when it is
      first or last and at most half of each spatial size (e.g. 31 bands of a 512×512 cube).

    Raises:
        ShapeError: not 3-D, or the band axis cannot be told (the message asks for ``--bands``).
    """
    cube = np.asarray(array)
    if cube.ndim != 3:
        raise ShapeError(f"expected a 3-D cube (H×W×C or C×H×W), got shape {_fmt_shape(cube.shape)}")
    shape = cube.shape
    if bands is not None:
        bands = _check_bands(bands)
        if shape[-1] == bands:
            band_axis = -1
        elif shape[0] == bands:
            band_axis = 0
        else:
            raise ShapeError(
                f"cube of shape {_fmt_shape(shape)} has no first or last axis of {bands} bands; "
                "expected H×W×C or C×H×W"
            )
    elif shape[-1] == 28:
        band_axis = -1
    elif shape[0] == 28:
        band_axis = 0
    elif 2 * shape[-1] <= min(shape[0], shape[1]):
        band_axis = -1
    elif 2 * shape[0] <= min(shape[1], shape[2]):
        band_axis = 0
    else:
        raise ShapeError(
            f"cannot tell which axis of the cube of shape {_fmt_shape(shape)} holds the bands; pass --bands "
            "(Python: bands=)"
        )
    hwc = cube if band_axis == -1 else np.moveaxis(cube, 0, -1)
    return np.ascontiguousarray(hwc, dtype=np.float32)


def read_cube(path, key=None, bands: int | None = None, role: str = "cube") -> tuple[np.ndarray, LoadedArray]:
    """Read a hyperspectral cube as float32 ``H × W × C`` (values as stored, e.g. [0, 1] or raw integers).

    The layout is found by :func:`to_hwc`, helped by what the file says: TIFF stacks that record their axes
    (ours: ``CYX``), a stored ``bands`` entry, and stored wavelengths (one per band). A leading batch axis of 1 (``1 × ...``) is dropped.
    Also checks that stored wavelengths, if any, number one per band.

    Returns:
        ``(cube_hwc, loaded)``; ``loaded.data`` keeps the array as stored in the file.
    """
    loaded = read_array(path, key, role=role)
    data = loaded.data
    where = _where(loaded.path, loaded.key)
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3:
        raise ShapeError(
            f"{where} holds an array of shape {_fmt_shape(loaded.data.shape)}; a cube must be 3-D (H×W×C or C×H×W)"
        )
    stored_bands = loaded.metadata.get("bands")
    if bands is None and isinstance(stored_bands, int) and not isinstance(stored_bands, bool) and stored_bands > 0:
        bands = stored_bands
    stored_wavelengths = loaded.metadata.get("wavelengths_nm")
    if bands is None and stored_wavelengths is not None and len(stored_wavelengths) in (data.shape[0], data.shape[-1]):
        bands = len(stored_wavelengths)  # one wavelength per band: the file says how many bands it holds
    axes = loaded.metadata.get("axes")
    if _suffix_format(loaded.path) == "tif" and isinstance(axes, str) and axes[:1] == "C":
        # The file says the first axis holds the bands: trust it over shape guessing (matters when W == C).
        if bands is not None and data.shape[0] != _check_bands(bands):
            raise ShapeError(f"{where} holds {data.shape[0]} bands (axes {axes}); expected {bands}")
        cube = np.ascontiguousarray(np.moveaxis(data, 0, -1), dtype=np.float32)
    else:
        try:
            cube = to_hwc(data, bands)
        except ShapeError as exc:
            raise ShapeError(f"{where}: {exc}") from None
    wavelengths = loaded.metadata.get("wavelengths_nm")
    if wavelengths is not None and len(wavelengths) != cube.shape[-1]:
        raise ShapeError(
            f"{where} stores {len(wavelengths)} wavelengths but its cube has {cube.shape[-1]} bands; "
            "expected one wavelength per band"
        )
    return cube, loaded


def _squeeze_singletons(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data.reshape([n for n in data.shape if n != 1])) if data.ndim > 2 else data


def read_measurement(path, key=None) -> tuple[np.ndarray, LoadedArray]:
    """Read a snapshot measurement as a 2-D ``H × W'`` array, values as stored: float data as float32, integer
    data (a camera's uint8/uint16 frame) in its stored integer type, so that :class:`hsra_cli.Reconstructor`,
    ``model(measurement, mask)`` and :func:`unit_range` see it is integer and scale it by its type's full scale,
    as ``hsra reconstruct`` does (``metadata["integer_dtype"]`` names the type too).

    A 3-D (or 4-D) array whose extra axes have length 1 (``H × W' × 1``, ``1 × H × W'``) is squeezed.
    """
    loaded = _read_array(path, key, "measurement", keep_integers=True)
    data = _squeeze_singletons(loaded.data) if 1 in loaded.data.shape else loaded.data
    if data.ndim != 2:
        raise ShapeError(
            f"{_where(loaded.path, loaded.key)} holds an array of shape {_fmt_shape(loaded.data.shape)}; "
            "a measurement must be 2-D (H×W')"
        )
    return data, loaded


def read_mask(path, key=None) -> tuple[np.ndarray, LoadedArray]:
    """Read a coded-aperture mask as float32 transmission in [0, 1], in its stored layout: 2-D aperture ``H × W``
    or 3-D shifted mask Φ (``H × W' × C`` or ``C × H × W'``). Length-1 axes of a 3-D or 4-D array are squeezed.

    Values follow :func:`mask_full_scale`: an integer mask beyond 0/1 (a 0/255 image) is scaled to [0, 1]
    (``metadata["mask_scaled_by"]``, e.g. ``"1/255"``); negative values, a float mask above 1, and an integer
    mask beyond 16-bit values are refused (:class:`ValueRangeError`)."""
    loaded = read_array(path, key, role="mask")
    data = _squeeze_singletons(loaded.data) if 1 in loaded.data.shape else loaded.data
    if data.ndim not in (2, 3):
        raise ShapeError(
            f"{_where(loaded.path, loaded.key)} holds an array of shape {_fmt_shape(loaded.data.shape)}; "
            "a mask must be a 2-D aperture (H×W) or a 3-D shifted mask (H×W'×C)"
        )
    where = _where(loaded.path, loaded.key)
    full_scale = mask_full_scale(float(data.min()) if data.size else 0.0, float(data.max()) if data.size else 0.0,
                                 int(np.count_nonzero(data < 0)), (loaded.metadata or {}).get("integer_dtype"), where)
    if full_scale is not None:
        data = (data / np.float32(full_scale)).astype(np.float32)
        loaded.metadata["mask_scaled_by"] = f"1/{full_scale}"
    return data, loaded


#: How far above 1 a float mask may go (calibration noise) before it is refused as stored on another scale.
MASK_TOLERANCE = 1.01


#: Integer types up to this many bytes (uint8, uint16, int8, int16) hold a mask in units of their own full scale.
#: Wider ones (int32, int64 — numpy's default integer, so ``mask * 255`` is one — uint32, uint64) hold no camera's
#: full scale: their values are read as 8- or 16-bit transmission (:func:`mask_full_scale`).
_MASK_TYPE_SCALE_BYTES = 2
#: The full scales a mask in a wide integer type is read at: the narrowest that holds its greatest value.
_WIDE_MASK_FULL_SCALES = (255, 65535)


def mask_full_scale(low: float, peak: float, negative: int, integer_dtype, what: str) -> int | None:
    """The one rule for a mask's values (files, :func:`read_mask`; arrays, :func:`hsra_cli.physics.input_values`),
    from its least and greatest value and its count of negative ones: negative values are refused (a transmission
    below zero is not physical, not even after a dark-frame subtraction, which should clip); an integer mask
    beyond 0/1 holds transmission in units of a full scale, which is returned, to divide by: its type's for 8- and
    16-bit types (a 0/255 uint8 image: 255), as integer cubes and measurements do; for wider types (int32, int64,
    uint32, uint64) that of the narrowest unsigned type holding its greatest value (255 up to 255, else 65535 up
    to 65535; a greater value is refused). A float mask above :data:`MASK_TOLERANCE` is refused (the CASSI model
    scales the cube by the mask: a mask stored ×255 would give a cube 255 times too dark). None: the values are
    used as they are (values in [0, 1] of any type). ``what`` names the mask in errors."""
    if negative:
        raise ValueRangeError(
            f"{what} holds {negative} negative values (down to {low:.3g}); a mask transmits light: expected values "
            "≥ 0 (clip a calibrated mask to [0, 1])"
        )
    if peak > 1 and integer_dtype is not None:
        dtype = np.dtype(integer_dtype)
        if dtype.itemsize <= _MASK_TYPE_SCALE_BYTES:
            return int(np.iinfo(dtype).max)
        for full_scale in _WIDE_MASK_FULL_SCALES:
            if peak <= full_scale:
                return full_scale
        raise ValueRangeError(
            f"{what} holds {dtype.name} values up to {peak:.0f}; a mask is a transmission: expected values in "
            f"[0, 1], or 8-bit (0–255) or 16-bit (0–65535) levels (divide it by its full scale)"
        )
    if peak > MASK_TOLERANCE:
        raise ValueRangeError(
            f"{what} holds values up to {peak:.4g}; a mask is a transmission: expected values in [0, 1] (divide it "
            "by its full scale, e.g. 255, or give it as an integer type)"
        )
    return None


# ------------------------------------------------------------------------------------------------------
# writing


def check_output_suffix(path, allowed_suffixes, what: str, label: str = "", alternative: str = "") -> None:
    """Refuse an output file whose suffix says another format than the one written there (``--json`` output to
    ``metrics.csv``, HTML to ``rep.txt``): a :class:`UsageError` naming the file and the suffixes expected.
    ``allowed_suffixes``: the suffixes of the format written (``(".json",)``), compared without regard to case;
    ``what``: that format, as the message names it (``"JSON"``); ``label``: the option that named the file
    (``"-o"``), said before it; ``alternative``: what else is accepted (``"a folder (end it with /)"``)."""
    allowed = tuple(suffix.lower() for suffix in allowed_suffixes)
    suffix = Path(path).suffix
    if suffix.lower() not in allowed:
        said = f"ends in {suffix!r}" if suffix else "has no suffix"
        raise UsageError(
            f"{label + ' ' if label else ''}{str(path)!r} {said}, but {what} is written there; expected a name ending "
            f"in {' or '.join(allowed)}{', or ' + alternative if alternative else ''}"
        )


def check_writable(path, overwrite=False) -> None:
    """Raise unless ``path`` may be written: :class:`OutputExistsError` when it exists and ``overwrite`` is
    False, :class:`UsageError` when it is a folder, :class:`HsraError` when its folder cannot be created or
    written. Commands call this for every output before computing anything."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{target} is a folder; expected an output file name")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():  # the path given names a file where a folder must be: a usage error, as for -o
        raise UsageError(f"cannot create {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise HsraError(f"cannot write {target}: folder {folder} is not writable")


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where Linux reports it (/proc/self/status);
    elsewhere set and restored at once under a lock (the writer threads read it the same way)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _ordinary_permissions(path: Path) -> None:
    """Give a finished temporary file the permissions a plain ``open()`` would: 0666 less the umask. Some
    writers (safetensors) create their files 0600, which would hide weights from the rest of a lab."""
    try:
        os.chmod(path, 0o666 & ~current_umask())
    except OSError:  # a file system without POSIX modes: leave what it gives
        pass


@contextlib.contextmanager
def output_folder(path) -> Iterator[Path]:
    """Context manager around the writing of one call's outputs into folder ``path``.

    Creates the folder (and its missing parents); when the block ends, the folders it created that are still
    empty are removed again, so a call whose every input failed (or was interrupted) leaves no empty folder
    behind. Folders that existed before are never touched.
    """
    folder = Path(path)
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise HsraError(f"cannot create output folder {folder}: {_os_reason(exc)}") from exc
    try:
        yield folder
    finally:
        _remove_empty(created)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a call created (deepest first), stopping at the first that holds something."""
    for made in folders:
        try:
            made.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def atomic_output(path, overwrite=False) -> Iterator[Path]:
    """Context manager for writing ``path`` all-or-nothing.

    Yields a temporary path ``.<name>.<random>.tmp`` in the target's folder (created if missing); write the
    file there (writers open it for writing, which keeps the file). On success the temporary file is renamed
    onto ``path``; on any exception (Ctrl-C and SIGTERM included) it is deleted and the exception re-raised, so
    no partial output is ever left. The existence check (:class:`OutputExistsError` unless ``overwrite``)
    happens before anything is created. While it is written the temporary file holds an exclusive lock, so
    :func:`remove_stale_temporaries` can tell it from one left by a killed process (SIGKILL, power loss). The
    file gets the permissions the umask allows (0644 under umask 022), whatever mode the writer created it with.
    """
    target = Path(path)
    check_writable(target, overwrite)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # Created here with ordinary permissions (mkstemp would give 0600) and locked while it is written. A POSIX
    # record lock, not flock(): HDF5 flock()s the files it writes, and a lock of the same process never blocks
    # it. (Any close of the file releases a POSIX lock, e.g. when a writer finishes; the age rule covers that.)
    created = _missing_folders(target.parent)  # removed again when nothing gets written
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError as exc:  # a folder that refuses files (permissions, a read-only or pseudo file system)
        _remove_empty(created)
        raise HsraError(f"cannot write {target}: {_os_reason(exc)}") from exc
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):  # file systems without locks: the temporary goes unlocked
                fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield temporary
        if not temporary.exists() or temporary.stat().st_size == 0:
            raise HsraError(f"nothing was written for {target}")
        _ordinary_permissions(temporary)
        if overwrite:
            os.replace(temporary, target)
        else:
            # A link fails if the target appeared since the check (another process): never clobber it.
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise OutputExistsError(f"{target} exists; pass --overwrite to replace it") from None
            except OSError:  # file systems without hard links
                if target.exists():
                    raise OutputExistsError(f"{target} exists; pass --overwrite to replace it") from None
                os.replace(temporary, target)
            temporary.unlink(missing_ok=True)
    except BaseException:
        temporary.unlink(missing_ok=True)
        os.close(descriptor)
        descriptor = None
        _remove_empty(created)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)


def remove_stale_temporaries(folder) -> tuple[list[tuple[Path, int]], list[Path]]:
    """Remove the temporary files a killed ``hsra`` process left in ``folder`` (not recursive).

    Only hidden files named as :func:`atomic_output` names them (``.<name>.<12 hex digits>.tmp``, for a file
    type hsra writes) are looked at; anything else is never touched. One is removed when no process holds its
    lock and it has not changed for :data:`STALE_TEMPORARY_SECONDS`; a locked one belongs to a live writer (e.g.
    another ``--part-id`` writing into the same folder) and is left alone.

    Returns ``(removed, kept)``: ``(path, bytes)`` of each file removed, and the unlocked but recent (or, without
    file locks, all) leftovers that were only reported.
    """
    removed: list[tuple[Path, int]] = []
    kept: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed, kept
    now = time.time()
    for entry in entries:
        match = _TEMPORARY_NAME.match(entry.name)
        if not match or Path(match["target"]).suffix.lower() not in _WRITTEN_SUFFIXES:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            descriptor = os.open(entry.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # not ours to open (another user's), or gone
        try:
            if fcntl is None:
                kept.append(Path(entry.path))
                continue
            try:
                fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                continue  # a live writer holds it
            except OSError:
                kept.append(Path(entry.path))  # no locks on this file system: cannot tell, so only report
                continue
            status = os.fstat(descriptor)
            if now - status.st_mtime < STALE_TEMPORARY_SECONDS:
                kept.append(Path(entry.path))
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append((Path(entry.path), status.st_size))
        finally:
            os.close(descriptor)
    return removed, kept


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _array_for_writing(array, what: str, ranks: tuple[int, ...]) -> np.ndarray:
    data = _to_numpy(array)
    if data.ndim not in ranks:
        expected = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(f"{what} has shape {_fmt_shape(data.shape)}; expected a {expected} array")
    if data.size == 0:
        raise ShapeError(f"{what} is empty (shape {_fmt_shape(data.shape)})")
    kind = _dtype_kind(data.dtype)
    if kind != "numeric":
        raise ValueRangeError(f"{what} holds {kind} values; expected real numbers")
    data = np.ascontiguousarray(data, dtype=np.float32)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise ValueRangeError(f"refusing to write {what}: it holds {bad} NaN/Inf values; expected finite numbers")
    return data


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _metadata_json(metadata: dict) -> str:
    try:
        return json.dumps(metadata, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata cannot be stored as JSON: {_short_reason(exc)}") from None


def _h5_attribute(value):
    """Metadata entry -> HDF5 attribute: numbers, strings and flat number lists natively, the rest as JSON."""
    if isinstance(value, (bool, np.bool_, str)) or isinstance(value, _NUMBER_TYPES):
        return value
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, _NUMBER_TYPES) and not isinstance(v, bool) for v in value
    ):
        return np.asarray(value)
    return json.dumps(value, default=_json_default)


def _mat73_header() -> bytes:
    """The 128-byte MATLAB header at the start of the 512-byte userblock of a v7.3 file."""
    import time

    text = (
        "MATLAB 7.3 MAT-file, Platform: hsra, "
        f"Created on: {time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
    ).encode("ascii")
    # 116 bytes of text, 8 bytes of subsystem offset (none), version 0x0200, endian indicator "IM".
    return text[:116].ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def _write_mat73(tmp: Path, key: str, array: np.ndarray, wavelengths, meta_json: str | None) -> None:
    import h5py

    def numeric(handle, name: str, values: np.ndarray) -> None:
        # MATLAB is column-major: reversing the axes makes MATLAB see the array in the caller's orientation.
        stored = np.ascontiguousarray(values.T)
        dataset = handle.create_dataset(name, data=stored, compression="gzip", compression_opts=4, chunks=True)
        dataset.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASSES[values.dtype])

    with h5py.File(str(tmp), "w", userblock_size=_MAT73_USERBLOCK) as handle:
        numeric(handle, key, array)
        if wavelengths is not None:
            numeric(handle, "wavelengths_nm", np.asarray(wavelengths, dtype=np.float64)[None, :])
        if meta_json is not None:
            # A MATLAB char row vector: UTF-16 code units; JSON escapes make the text ASCII anyway.
            codes = np.frombuffer(meta_json.encode("utf-16-le"), dtype=np.uint16)[:, None]
            dataset = handle.create_dataset(_META_NAME, data=codes)
            dataset.attrs["MATLAB_class"] = np.bytes_("char")
            dataset.attrs["MATLAB_int_decode"] = np.int32(2)
    with open(tmp, "r+b") as stream:
        stream.write(_mat73_header())


#: Compress a written .mat/.h5 array only when a sample of it shrinks below this fraction: a reconstruction's
#: float32 noise saves ~10 % for ~2 s of zlib on a 660×660×28 cube, while quantised or smooth data (the bundled
#: sample: 6 MB -> 0.2 MB) still compress.
COMPRESS_BELOW = 0.7
_COMPRESS_SAMPLE_BYTES = 1 << 18


def worth_compressing(array: np.ndarray) -> bool:
    """Whether zlib (level 1) shrinks evenly spread samples of ``array`` (256 KiB in all) below
    :data:`COMPRESS_BELOW`; a cheap forecast of whether compressing the whole array pays."""
    import zlib

    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if flat.size <= _COMPRESS_SAMPLE_BYTES:
        sample = flat.tobytes()
    else:
        pieces, width = 16, _COMPRESS_SAMPLE_BYTES // 16
        starts = np.linspace(0, flat.size - width, pieces).astype(np.int64)
        sample = b"".join(flat[start: start + width].tobytes() for start in starts)
    return len(zlib.compress(sample, 1)) < COMPRESS_BELOW * len(sample)


def _write_file(
    target: Path,
    fmt: str,
    key: str,
    array: np.ndarray,
    *,
    wavelengths,
    metadata: dict,
    tiff_axes: str,
    overwrite: bool,
    mat_version: str | None,
) -> Path:
    meta_json = _metadata_json(metadata) if metadata else None
    if mat_version not in (None, "5", "7.3"):
        raise UsageError(f"mat_version must be '5' or '7.3', got {mat_version!r}")
    use_v73 = False
    if fmt == "mat":
        if not _MATLAB_NAME.match(key):
            raise UsageError(f"{key!r} is not a valid MATLAB variable name (letters, digits, _; starts with a letter)")
        use_v73 = mat_version == "7.3" or (mat_version is None and array.nbytes >= _MAT_V5_LIMIT_BYTES)
        if mat_version == "5" and array.nbytes >= _MAT_V5_LIMIT_BYTES:
            raise UsageError(f"{target}: arrays of 2 GiB or more need MATLAB v7.3; drop mat_version='5'")
    try:
        with atomic_output(target, overwrite) as tmp:
            if fmt == "mat" and use_v73:
                _write_mat73(tmp, key, array, wavelengths, meta_json)
            elif fmt == "mat":
                import scipy.io

                variables: dict[str, Any] = {key: array}
                if wavelengths is not None:
                    variables["wavelengths_nm"] = np.asarray(wavelengths, dtype=np.float64)[None, :]
                if meta_json is not None:
                    variables[_META_NAME] = meta_json
                with open(tmp, "wb") as stream:
                    scipy.io.savemat(stream, variables, do_compression=worth_compressing(array), oned_as="row")
            elif fmt == "h5":
                import h5py

                with h5py.File(str(tmp), "w") as handle:
                    packed = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if worth_compressing(array) else {}
                    dataset = handle.create_dataset(key, data=array, chunks=True, **packed)
                    if wavelengths is not None:
                        dataset.attrs["wavelengths_nm"] = np.asarray(wavelengths, dtype=np.float64)
                    for name, value in metadata.items():
                        if name not in _METADATA_NAMES:
                            dataset.attrs[str(name)] = _h5_attribute(value)
                    if meta_json is not None:
                        dataset.attrs[_META_NAME] = meta_json
            elif fmt == "tif":
                import tifffile

                description: dict[str, Any] = {"axes": tiff_axes}
                if wavelengths is not None:
                    description["wavelengths_nm"] = [float(v) for v in wavelengths]
                if meta_json is not None:
                    description[_META_NAME] = meta_json
                tifffile.imwrite(str(tmp), array, photometric="minisblack", metadata=description)
            elif fmt == "npy":
                with open(tmp, "wb") as stream:
                    np.save(stream, array, allow_pickle=False)
            else:
                variables = {key: array}
                if wavelengths is not None:
                    variables["wavelengths_nm"] = np.asarray(wavelengths, dtype=np.float64)
                if meta_json is not None:
                    variables[_META_NAME] = np.asarray(meta_json)  # a unicode array: loads without pickle
                # A file object, because numpy appends ".npz" to a path that lacks it (our .tmp name).
                with open(tmp, "wb") as stream:
                    np.savez_compressed(stream, **variables)
    except OSError as exc:
        raise HsraError(f"cannot write {target}: {_short_reason(exc)}") from exc
    return target


def _checked_wavelengths(wavelengths, bands: int) -> list[float]:
    values = _to_numpy(wavelengths).astype(np.float64).ravel()
    if values.size != bands:
        raise ShapeError(f"got {values.size} wavelengths for a cube of {bands} bands; expected one per band")
    if not np.all(np.isfinite(values)):
        raise ValueRangeError("wavelengths hold NaN/Inf values; expected finite numbers (nm)")
    return [float(v) for v in values]


def write_cube(
    path,
    cube_hwc,
    *,
    wavelengths_nm=None,
    metadata: dict | None = None,
    overwrite=False,
    mat_version: str | None = None,
) -> Path:
    """Write an ``H × W × C`` cube (stored as float32) with its wavelengths and metadata; returns the path.

    Layout per format: ``.mat`` variables ``cube``, ``wavelengths_nm`` (1×C) and ``hsra_meta`` (JSON text),
    MATLAB v5 unless the cube is 2 GiB or more or ``mat_version="7.3"`` (v7.3: HDF5 with the MATLAB header,
    read by MATLAB as H×W×C); ``.h5`` dataset ``cube`` (gzip) with the wavelengths and each metadata entry as
    attributes; ``.tif`` a ``C × H × W`` float32 stack (axes ``CYX``, wavelengths and metadata in the JSON
    description); ``.npy`` the bare array (no wavelengths or metadata); ``.npz`` ``cube``, ``wavelengths_nm``,
    ``hsra_meta``. ``metadata`` must be JSON-serialisable; ``bands`` (= C) is added to it.
    ``wavelengths_nm`` may also be given inside ``metadata``. Written atomically, never over an existing file
    unless ``overwrite``. ``mat_version`` is ignored for formats other than ``.mat``.
    """
    fmt = output_format(path)
    target = Path(path)
    cube = _array_for_writing(cube_hwc, "cube", (3,))
    meta = dict(metadata or {})
    stored_wavelengths = meta.pop("wavelengths_nm", None)
    if wavelengths_nm is None:
        wavelengths_nm = stored_wavelengths
    bands = cube.shape[-1]
    wavelengths = None if wavelengths_nm is None else _checked_wavelengths(wavelengths_nm, bands)
    meta["bands"] = bands
    data = np.ascontiguousarray(np.moveaxis(cube, -1, 0)) if fmt == "tif" else cube
    return _write_file(
        target, fmt, "cube", data, wavelengths=wavelengths, metadata=meta, tiff_axes="CYX",
        overwrite=overwrite, mat_version=mat_version,
    )


def write_array(
    path,
    array,
    *,
    key: str,
    metadata: dict | None = None,
    overwrite=False,
    mat_version: str | None = None,
) -> Path:
    """Write a 2-D or 3-D array (measurement under ``key="meas"``, mask under ``"mask"``) as float32, as given.

    Same formats as :func:`write_cube` without the cube handling: the array is stored in its own orientation
    (a 3-D TIFF is a stack of its first axis). ``.npy`` and ``.tif`` cannot store the key (they read back under
    ``""``); ``.npy`` drops ``metadata``. Returns the path.
    """
    fmt = output_format(path)
    target = Path(path)
    if not key or key in _METADATA_NAMES:
        raise UsageError(f"key {key!r} cannot name an array; pick another (e.g. 'meas' or 'mask')")
    data = _array_for_writing(array, f"array {key!r}", (2, 3))
    return _write_file(
        target, fmt, key, data, wavelengths=None, metadata=dict(metadata or {}),
        tiff_axes="YX" if data.ndim == 2 else "QYX", overwrite=overwrite, mat_version=mat_version,
    )


def unit_range(cube: np.ndarray, loaded: LoadedArray) -> tuple[np.ndarray, str | None]:
    """Bring a cube (or measurement) read from an integer file (uint8/uint16, e.g. the KAIST copies) to [0, 1].

    Integer data holds its values in units of its dtype's full scale (``loaded.metadata["integer_dtype"]``) and
    comes back as float32; data from a float file is returned unchanged.
    Returns ``(cube, note)`` where ``note`` says what was done (``None`` when nothing was).
    """
    dtype = (loaded.metadata or {}).get("integer_dtype")
    if not dtype:
        return cube, None
    full_scale = np.iinfo(np.dtype(dtype)).max
    scaled = (cube / np.float32(full_scale)).astype(np.float32, copy=False)  # float32 for any integer type
    return scaled, f"{loaded.path}: {dtype} data scaled by 1/{full_scale}"
