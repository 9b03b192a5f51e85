"""Property-based fuzzing of every file reader: random bytes, truncations and mutations of valid .mat (v5 and
v7.3), .h5, .tif, .npy and .npz files give either a correct array or one clean error line, never a traceback, a
library warning or log line, or a hang.

The examples are derandomised (the same on every run, so CI is reproducible) and few per reader so the suite
stays fast; ``HSRA_FUZZ_EXAMPLES=2000`` runs a longer campaign with fresh random examples.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hsra_cli import io  # noqa: E402
from hsra_cli.errors import HsraError  # noqa: E402

EXAMPLES = int(os.environ.get("HSRA_FUZZ_EXAMPLES", "40"))
LONG_CAMPAIGN = "HSRA_FUZZ_EXAMPLES" in os.environ
#: No read of these tiny files may take longer: more means a hang (or a pathological loop).
SECONDS_PER_READ = 20

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_CAMPAIGN,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

CUBE = (np.arange(6 * 5 * 3, dtype=np.float32).reshape(6, 5, 3) / 90).astype(np.float32)

# Each reader of hsra_cli.io, as the commands call it.
READERS = {
    "read_array": lambda path: io.read_array(path).data,
    "read_cube": lambda path: io.read_cube(path, bands=3)[0],
    "read_measurement": lambda path: io.read_measurement(path)[0],
    "read_mask": lambda path: io.read_mask(path)[0],
    "declared_shape": lambda path: io.declared_shape(path),
    "list_arrays": lambda path: io.list_arrays(path),
}


def _write_seed(folder: Path, kind: str) -> Path:
    """A small valid file of each kind, as hsra writes them (and a plain NumPy one)."""
    if kind == "mat73":
        return io.write_cube(folder / "seed73.mat", CUBE, wavelengths_nm=[500, 550, 600], mat_version="7.3")
    if kind == "npy":
        path = folder / "seed.npy"
        np.save(path, CUBE)
        return path
    return io.write_cube(folder / f"seed.{kind}", CUBE, wavelengths_nm=[500, 550, 600])


KINDS = ["mat", "mat73", "h5", "tif", "npy", "npz"]
SUFFIX = {"mat": ".mat", "mat73": ".mat", "h5": ".h5", "tif": ".tif", "npy": ".npy", "npz": ".npz"}


_SEEDS: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def seed(kind: str, folder: Path) -> bytes:
    """The bytes of the valid file of ``kind`` (written once per session; kept out of Hypothesis' reports)."""
    if kind not in _SEEDS:
        _SEEDS[kind] = _write_seed(folder, kind).read_bytes()
    return _SEEDS[kind]


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def expire(signum, frame):
        raise _Hang(f"a read took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _read(data: bytes, suffix: str, folder: Path, reader: str):
    """Write ``data`` as a file and read it; returns the result or the HsraError. Anything else fails the test."""
    path = folder / f"fuzzed{suffix}"
    path.write_bytes(data)
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught, _time_limit(SECONDS_PER_READ):
            warnings.simplefilter("always")
            try:
                value = READERS[reader](path)
            except HsraError as exc:
                value = exc
    finally:
        root.removeHandler(handler)
    assert not caught, f"{reader}: a library warning reached the user: {caught[0].message}"
    assert not [r for r in handler.records if r.levelno >= logging.WARNING], (
        f"{reader}: a library log line reached the user: {handler.records[0].getMessage()}"
    )
    if isinstance(value, HsraError):
        message = str(value)
        assert message and "\n" not in message and "Traceback" not in message, message
        assert value.exit_code in (1, 2)
    elif isinstance(value, np.ndarray):
        # read_measurement keeps an integer capture's type (Reconstructor scales it as the CLI does)
        assert value.dtype == np.float32 or (reader == "read_measurement" and value.dtype.kind in "iu")
        assert value.flags.c_contiguous and value.size > 0
        assert np.isfinite(value).all()
    return value


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), reader=st.sampled_from(list(READERS)))
def test_random_bytes_give_a_clean_error_or_a_valid_array(kind, data, reader, workdir):
    _read(data, SUFFIX[kind], workdir, reader)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_truncated_files_give_a_clean_error_or_the_original_array(kind, data, workdir):
    original = seed(kind, workdir)
    length = data.draw(st.integers(0, len(original) - 1), label="length")
    reader = data.draw(st.sampled_from(list(READERS)), label="reader")
    value = _read(original[:length], SUFFIX[kind], workdir, reader)
    if reader == "read_cube" and isinstance(value, np.ndarray):
        np.testing.assert_array_equal(value, CUBE)  # nothing that reads is ever silently wrong


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_mutated_files_give_a_clean_error_or_an_array(kind, data, workdir):
    original = bytearray(seed(kind, workdir))
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), min_size=1, max_size=12),
        label="edits",
    )
    for position, value in edits:
        original[position] = value
    if data.draw(st.booleans(), label="also cut a slice out"):
        start = data.draw(st.integers(0, len(original) - 1), label="start")
        original[start : start + data.draw(st.integers(1, 64), label="cut")] = b""
    reader = data.draw(st.sampled_from(list(READERS)), label="reader")
    _read(bytes(original), SUFFIX[kind], workdir, reader)


@pytest.mark.parametrize("kind", ["npy", "npz", "h5", "mat73", "tif"])
def test_a_header_declaring_an_enormous_array_is_refused_before_allocating(kind, tmp_path):
    """The declared shape is checked against free memory before reading (no MemoryError, no swap storm)."""
    path = tmp_path / f"huge{SUFFIX[kind]}"
    shape = (200_000, 200_000, 28)  # 4.5 TB of float32
    if kind == "npy":
        with open(path, "wb") as stream:
            np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
            stream.write(b"\0" * 64)
    elif kind == "npz":
        import zipfile

        with zipfile.ZipFile(path, "w") as archive, archive.open("cube.npy", "w") as stream:
            np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
    elif kind == "tif":
        import tifffile

        # A real (small) TIFF whose page count is then claimed to be enormous through the ImageJ description.
        tifffile.imwrite(path, np.zeros((2, 4, 4), np.float32), imagej=True, metadata={"frames": 10**12})
    else:
        import h5py

        with h5py.File(path, "w") as handle:  # chunked and empty: tiny on disk, enormous when read
            handle.create_dataset("cube", shape=shape, dtype="f4", chunks=(1, 64, 28))
    try:
        io.read_array(path)
    except HsraError as exc:
        assert "\n" not in str(exc)
        if kind != "tif":  # tifffile itself rejects the claim; for the others the size check must speak
            assert "memory" in str(exc)
    else:
        assert kind == "tif"  # tifffile may read the real two pages instead of the claim: fine, it is correct
