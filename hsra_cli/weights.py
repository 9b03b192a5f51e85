"""Model folders: how trained HSRA weights are stored, found and loaded (strictly, with a hash check).

A model folder is named after the model's canonical name (``hsra-s``, ``hsra-dum-3stg``...), or after the
name and a tag for one of several sets of weights of that architecture (``hsra-s.any``, ``hsra-s.kaist``; see
:func:`hsra_cli.registry.split_tag`), and holds:

* ``model.safetensors`` — the state dict, contiguous float32 tensors, metadata ``{"format": "pt"}``;
* ``config.json`` — ``name``, ``arch_config`` (the :class:`~hsra_cli.nets.config.HsraConfig` fields),
  ``physics`` (bands, wavelengths_nm, dispersion_step, dispersion_axis, input_normalisation), ``sha256`` of
  ``model.safetensors``, ``hsra_version``, and the training card (data, steps, wall time, hardware, metrics);
* ``README.md`` — the model card, rendered from config.json.

Folders are looked up in ``$HSRA_MODELS_DIR`` (several folders separated by ``os.pathsep``) and then in the
package's own ``hsra_cli/models/`` folder, which ships inside the wheel as package data (so a plain
``pip install`` finds the shipped weights). Any sub-folder holding a ``config.json`` is a model folder, whatever
its name. Nothing is ever downloaded, and pickled checkpoints are never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .errors import InputFileError, UsageError, WeightsError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
INPUT_NORMALISATION = "measurement·2/bands inside the network; real captures scaled to max 0.8 before"
#: config.json keys written by :func:`save_model_folder` itself; a card cannot override them.
_RESERVED = ("name", "arch_config", "sha256", "hsra_version")


# ----------------------------------------------------------------------------------------------------------
# finding folders
#: The shipped model folders: package data, installed with the package (pyproject.toml's package-data globs
#: take every file of every sub-folder, so a new folder here ships without further changes).
PACKAGE_MODELS = Path(__file__).resolve().parent / "models"


def models_search_path() -> list[Path]:
    """Folders searched for model folders: ``$HSRA_MODELS_DIR`` entries first, then the package's ``models/``."""
    folders = [Path(p).expanduser() for p in os.environ.get("HSRA_MODELS_DIR", "").split(os.pathsep) if p.strip()]
    folders.append(PACKAGE_MODELS)
    return folders


def missing_search_folders() -> list[Path]:
    """The ``$HSRA_MODELS_DIR`` entries that are not folders (a typo, an unmounted disk): searched in vain."""
    return [folder for folder in models_search_path()[:-1] if not folder.is_dir()]


def model_folders() -> list[Path]:
    """Every model folder on :func:`models_search_path`, in search order: each sub-folder holding a
    ``config.json``, whatever its name (a folder may be named after the architecture, ``hsra-s``, or after
    a tag of its weights, ``hsra-s.any``). A name found in several places is listed each time; lookups take
    the first."""
    found: list[Path] = []
    for root in models_search_path():
        try:
            children = sorted(root.iterdir()) if root.is_dir() else []
        except OSError:  # an unreadable $HSRA_MODELS_DIR entry is skipped like a missing one
            continue
        found.extend(child for child in children if (child / CONFIG_NAME).is_file())
    return found


def folder_names(name: str) -> list[str]:
    """Folder names that hold weights for ``name``, in order of preference.

    ``NAME.TAG`` (or ``ALIAS.TAG``) -> ``["NAME.TAG"]``. A bare name -> ``["NAME", "NAME.DEFAULT", "NAME.OTHER"…]``:
    an untagged folder (what ``hsra train`` exports) wins over the default tag in the same search folder, and
    where the default tag is not installed the other declared tags follow, in their declared order.
    """
    from .registry import pretrained_tags, split_tag

    canonical, tag = split_tag(name)
    if tag is not None:
        return [f"{canonical}.{tag}"]
    return [canonical] + [f"{canonical}.{declared}" for declared in pretrained_tags(canonical)]


def find_model_folder(name: str) -> Path | None:
    """The installed folder for ``name`` (name, alias or ``NAME.TAG``): the search folders of
    :func:`models_search_path` in order, and in each the names of :func:`folder_names`; else None."""
    candidates = folder_names(name)
    by_root: dict[Path, dict[str, Path]] = {}
    for folder in model_folders():
        by_root.setdefault(folder.parent, {}).setdefault(folder.name, folder)
    for folders in by_root.values():  # dicts keep the search order of the roots
        for folder_name in candidates:
            if folder_name in folders:
                return folders[folder_name]
    return None


def installed_models() -> dict[str, Path]:
    """``{name: folder}`` of every installed model folder, the first one found per name: untagged folders under
    the architecture's name, tagged ones as ``NAME.TAG``, other folders under their own name, and every
    architecture with weights also under its bare name (the folder :func:`find_model_folder` picks for it)."""
    from .registry import split_tag

    installed: dict[str, Path] = {}
    for folder in model_folders():
        installed.setdefault(folder.name, folder)
    architectures = set()
    for name in installed:
        try:
            architectures.add(split_tag(name)[0])
        except UsageError:  # a folder named after no registered model: listed under its own name only
            continue
    for arch in architectures:
        if arch not in installed:
            found = find_model_folder(arch)
            if found is not None:
                installed[arch] = found
    return installed


def tagged_folders(name: str) -> dict[str, Path]:
    """``{tag: folder}`` of the installed tagged weights of an architecture (the first found per tag)."""
    from .registry import resolve_name

    canonical = resolve_name(name)
    return {
        key.rpartition(".")[2]: folder for key, folder in installed_models().items()
        if key != canonical and key.rpartition(".")[0] == canonical
    }


def missing_weights_message(name: str) -> str:
    from .registry import split_tag

    canonical, tag = split_tag(name)
    folder = f"{canonical}.{tag}" if tag else canonical
    others = sorted(tagged_folders(canonical))
    installed = f" (installed tags: {', '.join(f'{canonical}.{t}' for t in others)})" if others else ""
    missing = missing_search_folders()
    absent = (f" ($HSRA_MODELS_DIR names {', '.join(map(str, missing))}, which is not a folder)" if missing else "")
    return (
        f"no weights installed for {folder}{installed}{absent}: train them with `hsra train --model {canonical} ...`, "
        f"or put a model folder ({', '.join(MODEL_FILES)}) under $HSRA_MODELS_DIR/{folder}, or pass --weights "
        "FILE.safetensors"
    )


# ----------------------------------------------------------------------------------------------------------
# saving
def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model_folder(model, folder, *, card: dict, overwrite: bool = False) -> Path:
    """Write ``folder/`` = model.safetensors + config.json + README.md for ``model`` (from ``create_model``).

    ``card`` is the training record merged into config.json: e.g. ``{"training": {"data", "steps",
    "wall_time_s", "hardware", ...}, "validation": {"data", "scenes", "psnr_field", "ssim_field", ...}}``; a
    ``"physics"`` entry may add ``wavelengths_nm`` of the training data. Each file is written to a temporary
    name in the folder and renamed; nothing is replaced unless ``overwrite``. Returns the folder.
    """
    import torch
    from safetensors.torch import save_file

    from . import __version__
    from .bands import DEFAULT_BANDS, default_wavelengths
    from .io import atomic_output, check_writable

    name = getattr(model, "hsra_name", None)
    config = getattr(model, "config", None)
    if name is None or config is None:
        raise UsageError("save_model_folder needs a registered network built with hsra_cli.registry.create_model")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; expected a model folder")
    for filename in MODEL_FILES:  # check all three before writing any, so a refusal leaves nothing half-written
        check_writable(folder / filename, overwrite)

    card = dict(card or {})
    card_physics = dict(card.pop("physics", None) or {})
    for key in _RESERVED:
        card.pop(key, None)
    for key, value in (("bands", model.bands), ("dispersion_step", model.step), ("dispersion_axis", model.axis)):
        if key in card_physics and card_physics[key] != value:
            raise UsageError(f"the card says {key}={card_physics[key]!r} but the model was built with {value!r}")
    wavelengths = card_physics.get("wavelengths_nm")
    if (wavelengths is None or len(wavelengths) != model.bands) and model.bands == DEFAULT_BANDS:
        wavelengths = default_wavelengths(model.bands).tolist()  # the field's 28 bands
    elif wavelengths is not None and len(wavelengths) != model.bands:
        wavelengths = None  # other band counts: only wavelengths the data gave (none is "not recorded")
    record = {
        "name": name,
        "arch_config": config.to_dict(),
        "physics": {
            "bands": model.bands,
            **({"wavelengths_nm": [float(w) for w in wavelengths]} if wavelengths is not None else {}),
            "dispersion_step": model.step,
            "dispersion_axis": model.axis,
            "input_normalisation": INPUT_NORMALISATION,
            # anything else the trainer recorded about the optics (never overriding the model's own physics)
            **{k: v for k, v in card_physics.items() if k not in ("bands", "wavelengths_nm", "dispersion_step",
                                                                   "dispersion_axis", "input_normalisation")},
        },
        "sha256": None,
        "hsra_version": __version__,
        **card,
    }
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in model.state_dict().items()}
    # All three files are written under temporary names first and renamed together at the end, so an error
    # leaves no half-written folder.
    with (
        atomic_output(folder / WEIGHTS_NAME, overwrite=overwrite) as weights_tmp,
        atomic_output(folder / CONFIG_NAME, overwrite=overwrite) as config_tmp,
        atomic_output(folder / CARD_NAME, overwrite=overwrite) as card_tmp,
    ):
        save_file(tensors, str(weights_tmp), metadata={"format": "pt"})
        record["sha256"] = sha256_of(weights_tmp)
        config_tmp.write_text(json.dumps(record, indent=2, default=str, ensure_ascii=False) + "\n")
        card_tmp.write_text(render_card(record, parameters=sum(t.numel() for t in tensors.values())))
    return folder


# ----------------------------------------------------------------------------------------------------------
# loading
def read_model_config(folder: Path) -> dict:
    """config.json of a model folder, checked to be one of ours (WeightsError otherwise)."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(f"{folder} is not a model folder: {CONFIG_NAME} is missing (expected {', '.join(MODEL_FILES)})")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not readable JSON ({exc}); the model folder is damaged") from None
    if not isinstance(config, dict) or "name" not in config or "arch_config" not in config:
        raise WeightsError(f"{path} lacks 'name' and 'arch_config'; it was not written by hsra")
    return config


def folder_problem(folder, config: dict | None = None) -> tuple[str, str] | None:
    """Why a model folder cannot be loaded, as ``(state, message)`` with state ``"incomplete"`` (no
    model.safetensors) or ``"damaged"`` (config.json unreadable or not ours, weights unreadable or not matching the
    SHA-256 config.json records); None when it can. The rule :func:`load_model` applies, and ``hsra models`` shows."""
    folder = Path(folder)
    if config is None:
        try:
            config = read_model_config(folder)
        except WeightsError as exc:
            return "damaged", str(exc)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        return "incomplete", f"{folder} holds no {WEIGHTS_NAME}; the model folder is incomplete"
    try:
        actual = sha256_of(weights)
    except OSError as exc:
        return "damaged", f"{weights} is not readable ({exc.strerror or exc})"
    recorded = config.get("sha256")
    if recorded != actual:
        return "damaged", (f"{weights} does not match the SHA-256 recorded in its config.json (recorded "
                           f"{str(recorded)[:12]}…, file {actual[:12]}…): the file is corrupt or was replaced")
    return None


def _build(name: str, config: dict | None):
    from .registry import create_model

    kwargs = {}
    if config is not None:
        physics = config.get("physics", {})
        kwargs = dict(config.get("arch_config", {}))
        for key, arg in (("bands", "bands"), ("dispersion_step", "step"), ("dispersion_axis", "axis")):
            if key in physics:
                kwargs[arg] = physics[key]
    try:
        return create_model(name, **kwargs)
    except (TypeError, ValueError, UsageError) as exc:  # e.g. a config.json from a newer hsra with new fields
        raise WeightsError(f"cannot build {name} from its config.json: {exc}") from None


def _load_tensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable .safetensors file ({exc})") from None


def _check_state(model, tensors: dict, source: Path) -> None:
    """Raise a WeightsError naming the first missing/unexpected keys and shape mismatches."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    given = {key: tuple(value.shape) for key, value in tensors.items()}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k}: file {list(given[k])}, model {list(expected[k])}" for k in expected if k in given and given[k] != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es), e.g. {'; '.join(wrong[:3])}")
    if problems:
        raise WeightsError(
            f"{source} does not fit the {getattr(model, 'hsra_name', 'model')} architecture: {'; '.join(problems)}"
        )


def not_a_model_problem(path, label: str | None = None) -> str | None:
    """Why an existing ``path`` given as a model is none (a file, or a folder without config.json): a message
    naming what is accepted, about ``label`` (default: the path); None when ``path`` does not exist or is a
    model folder."""
    path = Path(path).expanduser()
    label = str(path) if label is None else label
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return None
        return f"{label} holds no model: expected a model folder with {CONFIG_NAME} + {WEIGHTS_NAME}"
    if not path.exists():
        return None
    if path.suffix.lower() == ".safetensors":
        return (f"{label} is a weights file, not a model folder: expected a model folder ({CONFIG_NAME} + "
                f"{WEIGHTS_NAME}) or a registered name, with a .safetensors file given as the weights")
    return (f"{label}: only .safetensors weights files or model folders ({CONFIG_NAME} + {WEIGHTS_NAME}) are "
            "accepted; pickled checkpoints are never loaded")


def _check_weights_path(weights) -> Path:
    path = Path(weights)
    if path.suffix.lower() != ".safetensors":
        raise WeightsError(
            f"{path}: only .safetensors weights are accepted; pickled checkpoints are never loaded"
        )
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    return path


def _fitting_bands(name: str, config: dict, model, tensors: dict) -> int | None:
    """The band count a bare weights file was trained for, when building ``name`` for it makes every shape fit:
    the sizes the file holds where the model built for ``config`` has its band count; None when none fits."""
    bands = (config.get("physics") or {}).get("bands") or getattr(model, "bands", None)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    candidates = set()
    for key, shape in expected.items():
        given = tuple(tensors[key].shape) if key in tensors else None
        if given is not None and len(given) == len(shape) and given != shape:
            candidates.update(g for g, e in zip(given, shape) if e == bands and g != e)
    for candidate in sorted(candidates):
        trial = {**config, "physics": {**(config.get("physics") or {}), "bands": int(candidate)}}
        trial["physics"].pop("wavelengths_nm", None)
        try:
            _check_state(_build(name, trial), tensors, Path("."))
        except (WeightsError, UsageError, ValueError, TypeError):
            continue
        return int(candidate)
    return None


def _weights_folder(weights) -> Path | None:
    """The model folder ``weights`` names (a folder with config.json) or lies in (a .safetensors file beside a
    config.json, as ``hsra train`` exports them); None for a bare file. A folder that is no model is refused."""
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise WeightsError(not_a_model_problem(path) or f"{path} holds no model")
        return path
    if path.suffix.lower() == ".safetensors" and path.is_file() and (path.parent / CONFIG_NAME).is_file():
        return path.parent
    return None


def load_model(name_or_folder, weights: Path | None = None, device="cpu", physics: dict | None = None):
    """Build a network and load its trained weights strictly: ``(model in eval mode, config dict)``.

    ``name_or_folder`` is a model folder or a registered name (its installed folder is looked up). The
    folder's config.json decides the architecture and physics, and ``model.safetensors`` must match its
    recorded SHA-256. ``weights`` loads other weights: a model folder (its config.json decides, as if it were
    named; it must hold the architecture named), or a ``.safetensors`` file (checked against the architecture;
    its hash is reported in the returned ``config["sha256"]``, the folder's recorded one in
    ``config["recorded_sha256"]``). A file exported by ``hsra train`` is built by the config.json beside it; a
    bare file by the named architecture with ``physics`` (``bands``, ``dispersion_step``, ``dispersion_axis``:
    what the caller knows of the optics, e.g. ``--bands 31``) over the installed folder's, or the registered
    configuration. The returned dict is config.json plus ``folder`` and ``weights_file``.
    """
    from .registry import get_entry

    bare_physics = None
    if weights is not None:
        own = _weights_folder(weights)
        if own is None:
            bare_physics = {k: v for k, v in (physics or {}).items() if v is not None}
        else:
            held = get_entry(read_model_config(own)["name"]).name
            named = isinstance(name_or_folder, str) and os.sep not in name_or_folder and \
                not (Path(name_or_folder) / CONFIG_NAME).is_file()
            if named and get_entry(name_or_folder).name != held:
                raise WeightsError(f"{weights} holds {held} weights, not {get_entry(name_or_folder).name}; "
                                   f"pass --model {held}")
            name_or_folder = own
            if Path(weights).is_dir():
                weights = None  # the folder itself: its weights checked against its recorded SHA-256
    folder: Path | None = None
    candidate = Path(str(name_or_folder)).expanduser()
    if isinstance(name_or_folder, Path) or os.sep in str(name_or_folder) or (candidate / CONFIG_NAME).is_file():
        problem = not_a_model_problem(candidate)
        if problem is not None:
            raise WeightsError(problem)
        if not candidate.is_dir():
            raise InputFileError(f"model folder {str(name_or_folder)!r} does not exist")
        folder = candidate
    else:
        try:
            entry = get_entry(str(name_or_folder))
        except UsageError:
            problem = not_a_model_problem(candidate)  # a folder or file here, named like no model
            if problem is not None:
                raise WeightsError(problem) from None
            raise
        if not entry.needs_weights:
            raise UsageError(f"{entry.name} is a solver: it needs no weights")
        folder = find_model_folder(str(name_or_folder))
        if folder is None and weights is None:
            raise WeightsError(missing_weights_message(str(name_or_folder)))

    weights_path = _check_weights_path(weights) if weights is not None else None
    if folder is not None:
        config = read_model_config(folder)
        name = get_entry(config["name"]).name
        if weights_path is None:
            weights_path = folder / WEIGHTS_NAME
            problem = folder_problem(folder, config)
            if problem is not None:
                raise WeightsError(problem[1])
    else:
        entry = get_entry(str(name_or_folder))
        name = entry.name
        config = {"name": name, "arch_config": dict(entry.config), "physics": {}}
    if bare_physics:  # a bare file for the optics the caller names: their physics, not the installed folder's
        known = dict(config.get("physics") or {})
        if known.get("bands") != bare_physics.get("bands", known.get("bands")):
            known.pop("wavelengths_nm", None)
        config = {**config, "physics": {**known, **bare_physics}}

    model = _build(name, config)
    tensors = _load_tensors(weights_path)
    try:
        _check_state(model, tensors, weights_path)
    except WeightsError as exc:
        if bare_physics is None:
            raise
        bands = _fitting_bands(name, config, model, tensors)
        if bands is None:
            raise
        raise WeightsError(f"{exc}; its shapes fit a {bands}-band {name}: give the band count it was trained "
                           f"for (--bands {bands})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied; the checks above catch keys and shapes
        raise WeightsError(f"{weights_path} does not fit {name}: {str(exc).splitlines()[0]}") from None

    result = dict(config)
    result["recorded_sha256"] = config.get("sha256")
    result["sha256"] = sha256_of(weights_path) if weights is not None else config.get("sha256")
    result["folder"] = str(folder) if folder is not None else ""
    result["weights_file"] = str(weights_path)
    return model.to(device).eval(), result


def load_pretrained(name: str, weights: Path | None = None, device="cpu", physics: dict | None = None):
    """The network ``name`` with its installed weights (or ``weights``, a model folder or a .safetensors file;
    ``physics`` as in :func:`load_model`): ``(model in eval mode, config dict)``.

    Raises a :class:`WeightsError` with how to get weights when none are installed.
    """
    from .registry import get_entry

    entry = get_entry(name)
    folder = find_model_folder(name) if entry.needs_weights else None
    if folder is None and weights is None and entry.needs_weights:
        raise WeightsError(missing_weights_message(name))
    # with other weights, the name: the architecture they must hold, its installed folder their fallback config
    return load_model(name if weights is not None else folder if folder is not None else entry.name, weights=weights,
                      device=device, physics=physics)


# ----------------------------------------------------------------------------------------------------------
# the model card
#: How the card names what ended a run before its planned steps (``training["stopped_by"]``).
STOP_REASONS = {"time": "its --max-time budget", "SIGTERM": "SIGTERM"}


def _steps_text(training: dict) -> str:
    """The card's steps: ``178 of 20000 planned (stopped early by its --max-time budget)`` when a run stopped
    before its planned steps (its run folder can continue it with ``--resume``), else the number of steps."""
    steps, planned = training.get("steps"), training.get("steps_planned")
    if steps is None:
        return "not recorded"

    if not isinstance(planned, int) or isinstance(planned, bool) or not isinstance(steps, int) or steps >= planned:
        return str(steps)
    reason = training.get("stopped_by")
    why = f"stopped early by {STOP_REASONS.get(reason, reason)}" if reason else "stopped early"
    return f"{steps} of {planned} planned ({why})"


#: Citations a card can name by key (``data_sources[i]["citation"]``); the poster is always cited.
CITATIONS = {
    "hsra": (
        "@misc{hsra_poster,\n"
        "  title        = {Bridging Local--Global Dissonance: Learning from Compressive Measurements for "
        "Hyperspectral Reconstruction},\n"
        "  howpublished = {Poster, International Conference on Machine Learning (ICML)},\n"
        "  note         = {The architecture; cite with the authors and year ICML lists. hsra is an independent "
        "re-implementation (no official code exists)}\n"
        "}"
    ),
    "kaist": (
        "@article{choi2017kaist,\n"
        "  author  = {Choi, Inchang and Jeon, Daniel S. and Nam, Giljoo and Gutierrez, Diego and Kim, Min H.},\n"
        "  title   = {High-Quality Hyperspectral Reconstruction Using a Spectral Prior},\n"
        "  journal = {ACM Transactions on Graphics (Proc. SIGGRAPH Asia)},\n"
        "  volume  = {36},\n"
        "  number  = {6},\n"
        "  year    = {2017}\n"
        "}"
    ),
    "tsa-net": (
        "@inproceedings{meng2020tsanet,\n"
        "  author    = {Meng, Ziyi and Ma, Jiawei and Yuan, Xin},\n"
        "  title     = {End-to-End Low Cost Compressive Spectral Imaging with Spatial-Spectral Self-Attention},\n"
        "  booktitle = {European Conference on Computer Vision (ECCV)},\n"
        "  year      = {2020}\n"
        "}"
    ),
    "cave": (
        "@article{yasuma2010cave,\n"
        "  author  = {Yasuma, Fumihito and Mitsunaga, Tomoo and Iso, Daisuke and Nayar, Shree K.},\n"
        "  title   = {Generalized Assorted Pixel Camera: Postcapture Control of Resolution, Dynamic Range, and "
        "Spectrum},\n"
        "  journal = {IEEE Transactions on Image Processing},\n"
        "  volume  = {19},\n"
        "  number  = {9},\n"
        "  year    = {2010}\n"
        "}"
    ),
}

_PATH_TOKEN = re.compile(r"(?<![\w.~-])(?:~|\.{1,2}|/)?(?:[^\s/:,()]+/)+(?=[^\s/]+)")


def display_source(text) -> str:
    """A data description with the folders of its paths removed: ``../shared/data/kaist/x.npz:0-3 (4 scenes)``
    -> ``x.npz:0-3 (4 scenes)``. Cards show what the data were, not where they lay on the training machine."""
    return _PATH_TOKEN.sub("", str(text))


def card_accuracy(config: dict) -> tuple[float | None, float | None, str]:
    """(PSNR dB, SSIM, what it was measured on) from a config.json card; None where not recorded.

    Reads ``validation`` as written by ``hsra train`` — the field's uint8 convention (the papers' tables)
    when recorded, else the float one, which is then named — or a ``metrics`` entry with ``psnr``/``ssim``.
    """
    block = config.get("validation") or config.get("metrics") or {}
    if not isinstance(block, dict):
        return None, None, ""
    if block.get("psnr_field") is not None:
        psnr, ssim, convention = block.get("psnr_field"), block.get("ssim_field"), ""
    elif block.get("psnr_float") is not None:
        psnr, ssim, convention = block.get("psnr_float"), block.get("ssim_float"), "float convention"
    else:
        psnr, ssim, convention = block.get("psnr", block.get("psnr_db")), block.get("ssim"), ""
    where = display_source(block.get("data_description") or block.get("data") or block.get("evaluated_on") or "")
    scenes = block.get("scenes")
    # the count, unless the description names its scenes already ("KAIST scene 05, KAIST mask")
    counted = isinstance(scenes, list) and scenes and "scene" not in where.lower()
    details = [f"{len(scenes)} scene{'s' if len(scenes) != 1 else ''}"] if counted else []
    details += [convention] if convention else []
    if details:
        where = f"{where} ({', '.join(details)})".strip()
    return (None if psnr is None else float(psnr)), (None if ssim is None else float(ssim)), where


def card_default_accuracy(config: dict) -> tuple[float | None, float | None]:
    """(PSNR dB, SSIM) of the card's validation as `hsra reconstruct` gives it by default (the network and its
    GAP-TV refinement, field convention); (None, None) when the card did not measure it."""
    block = config.get("validation")
    if not isinstance(block, dict) or block.get("psnr_field_refined") is None:
        return None, None
    ssim = block.get("ssim_field_refined")
    return float(block["psnr_field_refined"]), (None if ssim is None else float(ssim))


def _default_refine() -> dict:
    """The card fields of the refinement `hsra reconstruct` runs after a network by default."""
    from .solvers.gap_tv import refine_card_fields

    return refine_card_fields()


def _refined_accuracy_lines(config: dict) -> list[str]:
    """The card's line for the accuracy after `hsra reconstruct`'s default refinement, when it was measured."""
    block = config.get("validation")
    if not isinstance(block, dict) or block.get("psnr_field_refined") is None:
        return []
    from .solvers.gap_tv import LEGACY_REFINE_FIELDS, describe_refine

    default = _default_refine()
    ssim = block.get("ssim_field_refined")
    measured = {key: block.get(key, LEGACY_REFINE_FIELDS.get(key, "?")) for key in default}
    if measured == default:
        return [f"- with the {measured['refine']} refinement iterations `hsra reconstruct` adds by default (`--refine`): "
                f"PSNR {float(block['psnr_field_refined']):.2f} dB" + (f", SSIM {float(ssim):.4f}" if ssim is not None else "")]
    return [
        f"- with the refinement `hsra reconstruct` added by default when this was measured ({describe_refine(measured)}; "
        f"today's default is {describe_refine(default)}): "
        f"PSNR {float(block['psnr_field_refined']):.2f} dB" + (f", SSIM {float(ssim):.4f}" if ssim is not None else "")
    ]


def card_sources(config: dict) -> list[dict]:
    """The card's data sources as ``{"name", "use", "files", "citation"}`` dicts, without local paths.

    From ``datasets`` when the card lists them (as the shipped weights' does; ``citation`` is a key of
    :data:`CITATIONS`, a BibTeX entry, or a list of those), else one entry made from ``training.data``."""
    listed = config.get("datasets")
    if isinstance(listed, list) and listed:
        return [{key: display_source(value) if key == "files" else value for key, value in dict(item).items()}
                for item in listed if isinstance(item, dict)]
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    data = training.get("data")
    return [{"name": "training data", "use": "training", "files": display_source(data)}] if data else []


def card_citations(config: dict) -> list[str]:
    """BibTeX entries to cite for these weights: the poster first, then each data source's (by key of
    :data:`CITATIONS` or given in full)."""
    entries = [CITATIONS["hsra"]]
    for source in card_sources(config):
        citations = source.get("citation") or []
        for citation in citations if isinstance(citations, list) else [citations]:
            text = CITATIONS.get(str(citation).lower(), str(citation))
            if text not in entries:
                entries.append(text)
    return entries


def card_license(config: dict) -> str:
    licence = config.get("license")
    if isinstance(licence, dict):
        return "; ".join(f"{key}: {value}" for key, value in licence.items())
    return str(licence) if licence else "not stated by whoever trained them"


def _sources_lines(config: dict) -> list[str]:
    lines = []
    for source in card_sources(config):
        name, use, files = source.get("name", "?"), source.get("use"), source.get("files")
        lines.append(f"- {name}" + (f" — {use}" if use else "") + (f" ({files})" if files else ""))
    return lines or ["- not recorded"]


def _fmt_duration(seconds) -> str:
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _cases_lines(config: dict) -> list[str]:
    """Held-out accuracy on several cases (``held_out_cases``: {case: {"description", "alone", "default",
    "gap_tv"}}, PSNR dB / SSIM pairs), as a table."""
    cases = config.get("held_out_cases")
    if not isinstance(cases, dict) or not cases:
        return []

    def cell(pair):
        return f"{pair[0]:.2f} / {pair[1]:.3f}" if isinstance(pair, (list, tuple)) and len(pair) == 2 else "—"

    lines = ["## Held-out cases", "PSNR dB / SSIM, field convention, noiseless simulations "
             "(`python benchmarks/bench_cases.py`):", "",
             "| case | network alone | as `hsra reconstruct` gives it | GAP-TV |", "|---|---|---|---|"]
    for name, case in cases.items():
        lines.append(f"| {case.get('description', name)} | {cell(case.get('alone'))} | {cell(case.get('default'))} | "
                     f"{cell(case.get('gap_tv'))} |")
    return lines + [""]


def _history_lines(config: dict) -> list[str]:
    """Every training phase (``history``: a list of {"phase", "recipe", "samples", "wall_time_s", "hardware",
    "held_out"}), as a table: what the weights went through, in order."""
    history = config.get("history")
    if not isinstance(history, list) or not history:
        return []
    lines = ["## History", "| phase | recipe | samples (cumulative) | wall time | hardware | held-out PSNR after |",
             "|---|---|---|---|---|---|"]
    total = 0
    for phase in history:
        total += int(phase.get("samples") or 0)
        lines.append(
            f"| {phase.get('phase', '?')} | {phase.get('recipe', '')} | {int(phase.get('samples') or 0):,} ({total:,}) | "
            f"{_fmt_duration(phase['wall_time_s']) if phase.get('wall_time_s') else '—'} | "
            f"{phase.get('hardware', '—')} | {phase.get('held_out', '—')} |"
        )
    return lines + ["", "![held-out PSNR against samples and hours](history.png)", ""]


def _mask_lines(training: dict) -> list[str]:
    """The card's coded-aperture line: which mask files (and generated masks) the weights were trained through."""
    masks = training.get("masks") or ([training["mask"]] if isinstance(training.get("mask"), dict) else [])
    if not masks:
        return []
    named = ", ".join(f"{display_source(str(m.get('path', '?')))} ({'×'.join(str(n) for n in m.get('shape', []))})"
                      for m in masks)
    how = {"random": "random windows of", "fixed": ""}.get(training.get("mask_mode"), "")
    generated = training.get("generated_masks") or 0
    return [f"- coded aperture: {how + ' ' if how else ''}{named}"
            + (f"; generated masks on {generated:.0%} of patches" if generated else "")]


def _use_lines_installed(called: str) -> list[str]:
    return [
        "```",
        f"hsra reconstruct MEASUREMENT --mask MASK --model {called} -o out/",
        "```",
        "```python",
        "import hsra_cli",
        f'model = hsra_cli.create_model("{called}", pretrained=True)   # these weights, eval mode',
        "cube = model(measurement, mask)   # measurement B×H×W' (field scale), mask H×W -> cube B×C×H×W",
        "```",
    ]


def _use_lines_folder(name: str) -> list[str]:
    """How to use weights that are not installed: this folder given as --weights, or installed under a tag."""
    return [
        "```",
        f"hsra reconstruct MEASUREMENT --mask MASK --model {name} --weights path/to/this/folder -o out/",
        "```",
        "```python",
        "import hsra_cli",
        f'reconstructor = hsra_cli.Reconstructor("{name}", weights="path/to/this/folder")',
        "cube = reconstructor.reconstruct(measurement, mask).cube   # measurement H×W' (field scale), mask H×W",
        "model, config = hsra_cli.weights.load_model(\"path/to/this/folder\")   # the network, eval mode",
        "cube = model(measurement, mask)   # measurement B×H×W' (field scale), mask H×W -> cube B×C×H×W",
        "```",
        f"To call them by name, copy this folder to `$HSRA_MODELS_DIR/{name}.TAG` (any TAG) and pass "
        f"`--model {name}.TAG` (`hsra models` lists them).",
    ]


def render_card(config: dict, parameters: int | None = None) -> str:
    """The README.md model card for a config.json record (Markdown)."""
    from .registry import get_entry

    name = config.get("name", "?")
    # weights published under a tag are called by it (hsra-s.any); the architecture is still `name`
    called = f"{name}.{config['tag']}" if config.get("tag") else name
    try:
        entry = get_entry(name)
        description, kind = entry.description, entry.kind
    except Exception:  # a card for a model this version no longer registers: still render what we know
        description, kind = "", "network"
    arch = config.get("arch_config", {})
    physics = config.get("physics", {})
    training = config.get("training") if isinstance(config.get("training"), dict) else config
    wavelengths = physics.get("wavelengths_nm") or []
    psnr, ssim, where = card_accuracy(config)
    blocks = "({n_mk},{n_lwim} | {n2} | {n3} | {n2d} | {n1d})".format(**{k: arch.get(k, "?") for k in
                                                                           ("n_mk", "n_lwim", "n2", "n3", "n2d", "n1d")})
    lines = [
        f"# {called}",
        "",
        "## What it is",
        f"{description or name} — an HSRA {kind} network for single-disperser CASSI reconstruction "
        f"(measurement + mask → {physics.get('bands', '?')}-band cube).",
        f"Blocks (n_mk, n_lwim | n2 | n3 | n2d | n1d) = {blocks}"
        + (f", {arch['stages']} unfolding stages" if arch.get("stages") else "")
        + (f"; {parameters / 1e6:.2f} M parameters" if parameters else "") + ".",
        "",
        "## Physics it was trained for",
        f"- bands: {physics.get('bands', '?')}"
        + (f" ({wavelengths[0]:g}–{wavelengths[-1]:g} nm)" if wavelengths else " (wavelengths not recorded)"),
        f"- dispersion: {physics.get('dispersion_step', '?')} px per band along the {physics.get('dispersion_axis', '?')}",
        *_mask_lines(training),
        f"- input normalisation: {physics.get('input_normalisation', INPUT_NORMALISATION)}",
        "",
        "## Training" + (" (its last phase; *History* lists every phase)" if config.get("history") else ""),
        f"- data: {display_source(training.get('data', 'not recorded'))}",
        f"- steps: {_steps_text(training)}",
        f"- wall time: {_fmt_duration(training['wall_time_s']) if 'wall_time_s' in training else 'not recorded'}",
        f"- hardware: {training.get('hardware', 'not recorded')}",
        "",
        "## Data sources",
        *_sources_lines(config),
        "",
        "## Measured accuracy",
        (f"- PSNR {psnr:.2f} dB" + (f", SSIM {ssim:.4f}" if ssim is not None else "") + (f" on {where}" if where else ""))
        if psnr is not None else "- not measured",
        *_refined_accuracy_lines(config),
        "",
        *_cases_lines(config),
        *_history_lines(config),
        *([ "## Notes", *[f"- {note}" for note in config["notes"]], ""] if config.get("notes") else []),
        "## How to use",
        *(_use_lines_installed(called) if config.get("tag") else _use_lines_folder(name)),
        "`hsra reconstruct` and `hsra_cli.Reconstructor` follow the network with a few GAP iterations that correct "
        f"the cube to agree with the measurement (`--refine`, default {_default_refine()['refine']}; `--refine 0` gives the "
        "network alone, as `model(...)` above does).",
        "",
        "## Limits",
        "- Works only for the physics above (band count, dispersion step and axis); other optics need their own "
        "training (`hsra train`).",
        "- Accuracy holds for data like the training data; scenes, masks and noise unlike it reconstruct worse. "
        "Real captures must be scaled as stated above.",
        "",
        "## License",
        f"- {card_license(config)}",
        "",
        "## Citation",
        "Please cite the architecture and the data these weights were trained on:",
        "```bibtex",
        "\n\n".join(card_citations(config)),
        "```",
        "",
        "## Files",
        f"- `{WEIGHTS_NAME}` SHA-256 `{config.get('sha256', '?')}`; written by hsra {config.get('hsra_version', '?')}",
        "",
    ]
    return "\n".join(lines)
