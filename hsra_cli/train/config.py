"""The settings of one training run, as plain data (recorded in checkpoints, ``run.json`` and the model card)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from ..errors import UsageError

#: fixed: every patch sees one mask window (the simulation recipe); random: a window per patch (real systems)
MASK_MODES = ("fixed", "random")
LOSSES = ("rmse", "l1", "charbonnier")
LR_SCALINGS = ("sqrt", "linear", "none")
#: The batch (samples per optimizer step, all processes) that --lr is given for: the field's recipe trains at 5.
LR_REFERENCE_BATCH = 5
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")
#: The largest --seed: 32 bits, which every generator seeded from it (torch, numpy, the synthetic scenes) takes.
MAX_SEED = 2**32 - 1

#: Settings that change what a resumed run computes: they must equal the checkpoint's. The others (logging,
#: checkpoint cadence, validation, threads, where to stop this session) may change between sessions.
RESUME_MUST_MATCH = (
    "model", "data", "data_key", "mask", "mask_key", "synthetic", "synthetic_fraction", "synthetic_size",
    "synthetic_stream",
    "patch_size", "batch_size", "mosaic", "mask_mode", "mask_offset", "gain", "shot_noise", "qe", "bit_depth",
    "step", "axis", "loss", "lr", "min_lr", "warmup_steps", "steps", "clip_grad", "ema", "amp", "seed",
    "pretrained", "charbonnier_eps", "generated_masks", "noise_fraction", "lr_scaling", "exposure",
)

#: What options added since the first checkpoints meant before they existed: a checkpoint without the key ran
#: with this value, and resuming it keeps that value unless the option is given with another one.
LEGACY_DEFAULTS = {"generated_masks": 0.0, "noise_fraction": None, "lr_scaling": "none", "exposure": 1.0}

#: The options that take a real number: each must be finite (``inf`` is refused like ``nan``).
FLOAT_OPTIONS = (
    "synthetic_fraction", "generated_masks", "exposure", "noise_fraction", "gain", "qe", "charbonnier_eps", "lr",
    "min_lr", "clip_grad", "ema", "max_time",
)


def _path_list(value) -> list[str]:
    """A list option given as one path (``data="kaist.npz:0-3"``, a Path) or None means that one path, or none."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, os.PathLike)) or not hasattr(value, "__iter__"):
        return [os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)]
    return [str(v) for v in value]


@dataclass
class TrainConfig:
    """Every option of ``hsra train`` (see docs/training.md for the recipe behind the defaults).

    Paths are kept as strings so the configuration is JSON-ready; data sources may carry a scene selector
    (``stack.npz:0-3``). ``gain`` and ``shot_noise`` left as ``None`` follow the mask mode: the simulation
    recipe (``fixed``) uses gain 1 without noise, the real-data recipe (``random``) gain 1.2 with shot noise.
    """

    out: str
    model: str | None = None
    data: list[str] = field(default_factory=list)
    data_key: str | None = None
    mask: list[str] = field(default_factory=list)
    mask_key: str | None = None
    synthetic: int = 0
    synthetic_fraction: float | None = None
    synthetic_size: int = 256
    synthetic_stream: bool = False
    val_data: list[str] = field(default_factory=list)
    val_every: int = 1000
    patch_size: int = 128
    batch_size: int = 5
    mosaic: bool = True
    mask_mode: str = "fixed"
    mask_offset: tuple[int, int] = (0, 0)
    generated_masks: float = 0.0
    exposure: float = 1.0
    noise_fraction: float | None = None
    gain: float | None = None
    shot_noise: bool | None = None
    qe: float = 0.4
    bit_depth: int = 2048
    step: int = 2
    axis: str = "width"
    loss: str = "rmse"
    charbonnier_eps: float = 1e-3
    lr: float = 4e-4
    lr_scaling: str = "sqrt"
    min_lr: float = 1e-6
    warmup_steps: int | None = None
    steps: int = 10000
    clip_grad: float | None = None
    ema: float = 0.999
    amp: str = "auto"
    log_every: int = 50
    ckpt_every: int = 1000
    stop_after: int | None = None
    max_time: float | None = None
    workers: int | None = None
    resume: bool = False
    pretrained: str | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    overwrite: bool = False

    def __post_init__(self):
        self.mask_offset = tuple(int(v) for v in self.mask_offset)
        self.data = _path_list(self.data)
        self.val_data = _path_list(self.val_data)
        self.mask = _path_list(self.mask)
        self.out = str(self.out)

    # ----------------------------------------------------------------------------------------------
    @property
    def effective_gain(self) -> float:
        if self.gain is not None:
            return float(self.gain)
        return 1.2 if self.mask_mode == "random" else 1.0

    @property
    def effective_shot_noise(self) -> bool:
        if self.shot_noise is not None:
            return bool(self.shot_noise)
        return self.mask_mode == "random"

    @property
    def effective_noise_fraction(self) -> float:
        """Share of patches measured with the gain and the noise model (--noise-fraction, default all)."""
        return 1.0 if self.noise_fraction is None else float(self.noise_fraction)

    def lr_for(self, samples_per_step: int) -> float:
        """The peak learning rate for ``samples_per_step`` (batch × processes): --lr is given for
        :data:`LR_REFERENCE_BATCH` samples and scaled by the square root (Adam's rule), linearly, or not at all."""
        ratio = samples_per_step / LR_REFERENCE_BATCH
        if self.lr_scaling == "sqrt":
            return self.lr * ratio**0.5
        if self.lr_scaling == "linear":
            return self.lr * ratio
        return self.lr

    @property
    def stream_fraction(self) -> float:
        """Share of crops from the synthetic stream: --synthetic-fraction, else ½ (all of them without --data)."""
        if not self.data:
            return 1.0
        return 0.5 if self.synthetic_fraction is None else float(self.synthetic_fraction)

    @property
    def effective_warmup_steps(self) -> int:
        from .schedule import default_warmup_steps

        return default_warmup_steps(self.steps) if self.warmup_steps is None else int(self.warmup_steps)

    def check(self) -> None:
        """Option values that are wrong whatever the data: one-line :class:`UsageError` (exit code 2)."""

        def need(condition: bool, message: str) -> None:
            if not condition:
                raise UsageError(message)

        need(self.model is not None or self.pretrained is not None or self.resume,
             "give --model NAME (or --pretrained)")  # a resumed run knows its network
        if self.model is not None:  # a misspelt name is said before any data is read
            from ..registry import get_entry

            from ..registry import split_tag

            entry = get_entry(self.model)
            need(entry.needs_weights, f"{entry.name} is a solver without weights; there is nothing to train")
            tag = split_tag(self.model)[1]
            need(  # "--model s.kaist" names weights: training it from random weights would surprise
                tag is None or self.pretrained is not None,
                f"--model {self.model} names published weights, and --model takes an architecture; to start from "
                f"those weights give --pretrained {entry.name}.{tag} (or --model {entry.name} to train from scratch)",
            )
        # inf passes the range checks below (nan fails them), and breaks the run once OUT is written
        for name in FLOAT_OPTIONS:
            value = getattr(self, name)
            option = "--" + name.replace("_", "-")
            need(value is None or math.isfinite(value), f"{option} must be a finite number, got {value}")
        need(
            bool(self.data) or self.synthetic > 0 or self.synthetic_stream,
            "no training data: give --data and/or --synthetic N (or --synthetic-stream)",
        )
        need(
            not (self.synthetic_stream and self.synthetic > 0),
            "--synthetic N (a fixed pool) and --synthetic-stream (fresh scenes) exclude each other; pick one",
        )
        need(
            not (self.synthetic_stream and self.data and self.synthetic_fraction == 0),
            "--synthetic-stream with --synthetic-fraction 0 would never use the stream",
        )
        need(bool(self.mask), "give --mask FILE (the coded aperture the network is trained for)")
        need(0 <= self.generated_masks <= 1, f"--generated-masks must be a share in [0, 1], got {self.generated_masks}")
        need(
            self.generated_masks == 0 or self.mask_mode == "random",
            "--generated-masks needs --mask-mode random (fixed mode measures every patch through one mask window)",
        )
        need(self.exposure >= 1, f"--exposure must be ≥ 1 (1: off; 1.5: gains from 1/1.5 to 1.5), got {self.exposure}")
        need(
            self.noise_fraction is None or 0 <= self.noise_fraction <= 1,
            f"--noise-fraction must be a share in [0, 1], got {self.noise_fraction}",
        )
        need(self.lr_scaling in LR_SCALINGS, f"--lr-scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}")
        need(self.max_time is None or self.max_time > 0, f"--max-time must be positive, got {self.max_time}")
        need(self.workers is None or self.workers >= 0, f"--workers must be ≥ 0, got {self.workers}")
        need(self.steps >= 1, f"--steps must be ≥ 1, got {self.steps}")
        need(self.patch_size >= 2, f"--patch-size must be ≥ 2, got {self.patch_size}")
        need(not self.mosaic or self.patch_size % 2 == 0, f"--patch-size must be even for the mosaic, got {self.patch_size}")
        need(self.batch_size >= 1, f"--batch-size must be ≥ 1, got {self.batch_size}")
        need(self.synthetic >= 0, f"--synthetic must be ≥ 0 scenes, got {self.synthetic}")
        need(
            self.synthetic_fraction is None or 0 <= self.synthetic_fraction <= 1,
            f"--synthetic-fraction must be in [0, 1], got {self.synthetic_fraction}",
        )
        need(
            self.synthetic_fraction is None or self.synthetic > 0 or self.synthetic_stream,
            f"--synthetic-fraction {self.synthetic_fraction} has no effect without synthetic data; give --synthetic N "
            "or --synthetic-stream, or leave it out",
        )
        need(  # without --data every crop is synthetic, whatever the share says
            self.synthetic_fraction is None or bool(self.data) or self.synthetic_fraction == 1,
            f"--synthetic-fraction {self.synthetic_fraction} has no effect without --data (every crop is synthetic "
            "then); leave it out, or give --data",
        )
        need(
            self.synthetic > 0 or self.synthetic_size == TrainConfig.synthetic_size,
            f"--synthetic-size {self.synthetic_size} has no effect without --synthetic N (it sizes that pool's "
            "scenes; --synthetic-stream makes its scenes at the crop size); leave it out",
        )
        need(
            self.synthetic == 0 or self.synthetic_size >= self.patch_size,
            f"--synthetic-size {self.synthetic_size} is smaller than --patch-size {self.patch_size}",
        )
        need(self.mask_mode in MASK_MODES, f"--mask-mode must be one of {', '.join(MASK_MODES)}, got {self.mask_mode!r}")
        need(min(self.mask_offset) >= 0, f"--mask-offset must be non-negative, got {self.mask_offset}")
        need(self.effective_gain > 0, f"--gain must be positive, got {self.gain}")
        need(0 < self.qe <= 1, f"--qe must be in (0, 1], got {self.qe}")
        need(self.bit_depth >= 1, f"--bit-depth must be ≥ 1, got {self.bit_depth}")
        need(self.step >= 1, f"--step must be ≥ 1 pixel, got {self.step}")
        need(self.axis in ("width", "height"), f"--axis must be width or height, got {self.axis!r}")
        need(self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        need(self.charbonnier_eps > 0, f"Charbonnier ε must be positive, got {self.charbonnier_eps}")
        need(self.lr > 0, f"--lr must be positive, got {self.lr}")
        need(0 <= self.min_lr <= self.lr, f"--min-lr must be in [0, --lr], got {self.min_lr}")
        need(
            self.warmup_steps is None or 0 <= self.warmup_steps < self.steps,
            f"--warmup-steps must be in [0, --steps), got {self.warmup_steps}",
        )
        need(self.clip_grad is None or self.clip_grad > 0, f"--clip-grad must be positive, got {self.clip_grad}")
        need(0 <= self.ema < 1, f"--ema must be in [0, 1) (0 disables it), got {self.ema}")
        need(self.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        need(self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        need(self.threads is None or self.threads >= 1, f"--threads must be ≥ 1, got {self.threads}")
        for name in ("val_every", "log_every", "ckpt_every"):
            need(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        need(
            self.stop_after is None or 1 <= self.stop_after <= self.steps,
            f"--stop-after must be in [1, --steps], got {self.stop_after}",
        )
        need(0 <= self.seed <= MAX_SEED, f"--seed must be in [0, {MAX_SEED}], got {self.seed}")
        need(not (self.resume and self.overwrite), "--resume and --overwrite contradict each other; pick one")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mask_offset"] = list(self.mask_offset)
        return data


_NUMBER = r"(\d+(?:\.\d+)?)"
#: hours, minutes, seconds: each at most once, in that order (docs/training.md, --max-time)
_DURATION = rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?"


def parse_duration(text: str, option: str = "--max-time") -> float:
    """``"90s"``, ``"8m"``, ``"2h"``, ``"1h30m"``, ``"1h30m15s"`` or a bare number of seconds -> seconds (> 0).

    Units are ``h``, ``m`` and ``s`` (lower case), each at most once and in that order."""
    import re

    raw = str(text).strip()
    if re.fullmatch(_NUMBER, raw):
        seconds = float(raw)
    else:
        match = re.fullmatch(_DURATION, raw)
        if not raw or match is None:
            raise UsageError(
                f"{option} {text!r} is not a duration; expected e.g. 90s, 8m, 2h, 1h30m or a number of seconds "
                "(units h, m, s, each once, in that order)"
            )
        hours, minutes, secs = (float(group) if group else 0.0 for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise UsageError(f"{option} must be a positive duration, got {text!r}")
    return seconds


def load_config_file(path, given=(), notes: bool = True, label: str | None = None) -> dict:
    """Training options from a file: a TOML or JSON table of :class:`TrainConfig` fields, or a run's own
    ``run.json`` (whose ``config`` holds them). Returns ``{field: value}``; unknown keys are refused.

    ``given``: the options the command line sets (they override the file): no note is printed for them. A
    run.json's --stop-after and --max-time were that session's: they are left out, with a note (unless
    ``notes`` is false: ``-o OUT --resume`` reads OUT/run.json, where leaving them out goes without saying).
    ``label``: how messages name the file (default ``--config 'PATH'``)."""
    import json
    from pathlib import Path

    from ..errors import InputFileError

    path = Path(path)
    name = label or f"--config {str(path)!r}"
    if path.is_dir():
        raise InputFileError(f"{name} is a folder; expected a TOML or JSON file of options")
    if not path.is_file():
        raise InputFileError(f"{name} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError(
            f"{name} is not UTF-8 text; expected a TOML or JSON file of options"
        ) from None
    except OSError as exc:
        raise InputFileError(f"{name} cannot be read: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            table = tomllib.loads(text)
        else:
            def unique(pairs):  # a key twice is refused, as TOML refuses it (json keeps the last silently)
                keys = [key for key, _ in pairs]
                twice = sorted({key for key in keys if keys.count(key) > 1})
                if twice:
                    raise ValueError(f"the key {twice[0]!r} appears more than once")
                return dict(pairs)

            table = json.loads(text, object_pairs_hook=unique)
    except ValueError as exc:
        raise InputFileError(f"{name} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
    record = isinstance(table, dict) and isinstance(table.get("config"), dict) and "status" in table
    if record:
        table = table["config"]  # a run.json: replay its options
    if not isinstance(table, dict):
        raise InputFileError(f"{name} must hold a table of options")
    return options_from_table(table, label or f"--config {path}", given=given, notes=notes, record=record,
                              session_only_refused=path.suffix.lower() == ".toml")


def options_from_table(table: dict, source: str, given=(), notes: bool = True, record: bool = False,
                       session_only_refused: bool = False) -> dict:
    """Check and normalise a table of :class:`TrainConfig` fields read from ``source`` (named in messages).

    ``record``: the table is a run's own configuration (run.json, a checkpoint): its session's --stop-after and
    --max-time are left out. ``session_only_refused``: --resume/--overwrite in the table get a note (a file the
    user wrote), else they are dropped silently (a record of a session)."""
    from dataclasses import fields

    table = dict(table)
    normalised: dict = {}
    for key, value in table.items():
        name = str(key).replace("-", "_")
        if name in normalised:  # patch-size and patch_size: which one was meant?
            raise UsageError(f"{source} sets {name.replace('_', '-')} twice (as - and _ names); keep one")
        normalised[name] = value
    table = normalised
    if record:
        # where that session stopped is no part of the run: a replay (or a resume) runs to --steps
        dropped = [name for name in ("stop_after", "max_time") if table.pop(name, None) is not None and name not in given]
        if dropped and notes:
            import sys

            names = " and ".join("--" + name.replace("_", "-") for name in dropped)
            print(f"note: {source}: {names} of the recorded session not taken (they are per session; "
                  "pass them again to this one)", file=sys.stderr)
    known = {f.name for f in fields(TrainConfig)}
    # what one session does with the run is said on its command line, not replayed
    session_only = ("resume", "overwrite")
    ignored = [name for name in session_only if table.pop(name, None) and session_only_refused]
    if isinstance(table.get("max_time"), str):
        table["max_time"] = parse_duration(table["max_time"])
    if isinstance(table.get("mask_offset"), str):
        row, _, col = table["mask_offset"].partition(",")
        try:
            table["mask_offset"] = (int(row), int(col))
        except ValueError:
            raise UsageError(f"{source}: mask_offset {table['mask_offset']!r} is not ROW,COL") from None
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(
            f"{source}: unknown option(s) {', '.join(unknown)}; expected names of hsra train's options: "
            + ", ".join(sorted(name.replace("_", "-") for name in known if name not in session_only))
        )
    checked = {name: check_option_type(name, value, f"in {source.removeprefix('--config ')}") for name, value in table.items()}
    for name in ignored:  # a run.json records them: no note for it
        import sys

        print(f"note: {source}: {name} is not taken from a file; pass --{name} to this session", file=sys.stderr)
    return checked


def _option_types() -> dict:
    """``{field: type}`` of :class:`TrainConfig`, from its annotations (the one description of each option's type)."""
    import typing

    return typing.get_type_hints(TrainConfig)


_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_NOUNS = {int: "integer", float: "number", bool: "boolean", str: "string"}


def check_option_type(name: str, value, where: str = ""):
    """``value`` for the :class:`TrainConfig` field ``name``, checked against the field's annotation: a one-line
    :class:`UsageError` naming the option and the expected type otherwise. Integers written as floats without a
    fraction (3.0) become ints, a single string given for a list option becomes a one-item list, numbers may be
    written as the command line takes them (``"1e-4"``); booleans must be real booleans (``"false"`` is not one)."""
    import types
    import typing

    hint = _option_types()[name]
    option = f"--{name.replace('_', '-')}" + (f" {where}" if where else "")
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None:
            return None
        (hint,) = [arg for arg in args if arg is not type(None)]

    def fail(expected: str):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise UsageError(f"{option}: expected {expected}, got {shown}")

    def scalar(kind, item):
        if kind is bool:
            return item if isinstance(item, bool) else None
        if isinstance(item, bool):  # True is an int to Python, not to a user
            return None
        if kind is int:
            if isinstance(item, int):
                return item
            if isinstance(item, float) and item.is_integer():
                return int(item)
            if isinstance(item, str):  # what the command line takes for the option ("3")
                try:
                    return int(item)
                except ValueError:
                    return None
            return None
        if kind is float:
            if isinstance(item, str):  # what the command line takes for the option ("1e-4")
                try:
                    return float(item)
                except ValueError:
                    return None
            return float(item) if isinstance(item, (int, float)) else None
        if kind is str:
            return item if isinstance(item, str) else None
        return item

    origin = typing.get_origin(hint)
    if origin is list:
        (kind,) = typing.get_args(hint)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            fail(f"a list of {_NOUNS[kind]}s (or one {_NOUNS[kind]})")
        checked = [scalar(kind, item) for item in items]
        if any(item is None for item in checked):
            fail(f"a list of {_NOUNS[kind]}s")
        return checked
    if origin is tuple:
        kinds = typing.get_args(hint)
        names = ", ".join(_NOUNS[kind] for kind in kinds)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            fail(f"{len(kinds)} values [{names}]")
        checked = [scalar(kind, item) for kind, item in zip(kinds, value)]
        if any(item is None for item in checked):
            fail(f"{len(kinds)} values [{names}]")
        return tuple(checked)
    checked = scalar(hint, value)
    if checked is None:
        fail(_EXPECTED.get(hint, getattr(hint, "__name__", str(hint))))
    return checked
