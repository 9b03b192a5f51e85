"""The training run: the field's recipe, resumable, single process or one process per GPU (DDP).

:func:`train` is the library entry point behind ``hsra train``. It checks every input before it writes
anything, then trains with Adam, warm-up + cosine decay, optional gradient clipping, an EMA of the weights and
AMP on CUDA; validates the EMA weights every ``val_every`` steps on held-out full-size scenes; writes
checkpoints that restore the run exactly; and finally exports the EMA weights as a model folder with a card
filled from the run. Under ``torchrun`` every process trains on its own data stream and rank 0 alone logs,
validates and writes files.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..bands import default_wavelengths
from ..errors import HsraError, OutputExistsError, ShapeError, UsageError
from .checkpoint import CHECKPOINT_DIR, checkpoint_paths, load_checkpoint, save_checkpoint, update_checkpoint_state
from .config import LEGACY_DEFAULTS, RESUME_MUST_MATCH, TrainConfig
from .data import (
    Scene, aperture_from_mask, data_fingerprint, load_mask, load_scenes, mask_fingerprint, synthetic_scenes,
)
from .distributed import DistContext, all_gather_objects, init_distributed, shutdown, state_dict_digest
from .ema import WeightEma
from .model import build_model
from .report import LOG_COLUMNS, LOG_NAME, CsvLog, Progress, plot_learning_curve
from .runtime import StopRequest, Window, capture_rng, hardware_description, make_loss, resolve_amp, restore_rng
from .sampler import MeasurementModel, PatchSampler, SyntheticStream, scene_weights
from .schedule import WarmupCosine

RUN_RECORD = "run.json"
CURVE_NAME = "learning_curve.png"
ADAM_BETAS = (0.9, 0.999)
#: the final validation (float and field scores, and the GAP-TV refinement's) against a float-only one, measured
FINAL_VALIDATION_FACTOR = 3.0
#: what a first validation adds to its estimate from the step time (buffers for the larger input, warm-up)
FIRST_VALIDATION_S = 2.0
#: an export's card, README and learning-curve figure (measured: 3.1 s with matplotlib's import, on a busy CPU)
EXPORT_EXTRA_S = 3.0
#: the process's exit after the export (torch's teardown: 1.5–4 s measured on a busy CPU)
EXIT_S = 4.0


@dataclass
class TrainResult:
    """What a call of :func:`train` did (on every rank; files were written by rank 0 only)."""

    step: int
    completed: bool
    out_dir: Path
    model_name: str
    #: ``OUT/<model-name>/`` when the run reached ``steps`` and exported, else None
    model_folder: Path | None = None
    #: final validation: {"scenes": [...], "float": {"psnr", "ssim"}, "field": {...}} (empty without --val-data)
    validation: dict = field(default_factory=dict)
    #: SHA-256 of each rank's final weights (all equal in a healthy DDP run)
    weight_digests: list[str] = field(default_factory=list)
    #: the exported module (the EMA weights when --ema > 0, on rank 0), in eval mode
    model: torch.nn.Module | None = None
    #: the optimised weights themselves (what DDP keeps identical on every rank)
    trained: torch.nn.Module | None = None
    #: why the run stopped before ``steps`` and exported anyway: "time" (--max-time) or "SIGTERM"; else None
    stopped_by: str | None = None


# --------------------------------------------------------------------------------------------------
def train(config: TrainConfig, *, console=None, quiet: bool = False, started: float | None = None) -> TrainResult:
    """Run (or resume) the training described by ``config``; see docs/training.md.

    ``console`` is a Rich console on stderr for progress and messages (None: silent). ``started``: the
    ``time.perf_counter()`` from which ``config.max_time`` counts (the command's start; default: this call). Raises
    :class:`hsra_cli.errors.HsraError` subclasses, with nothing written, when an input is unusable.
    """
    config.check()
    from ..reconstruct import resolve_device

    device = resolve_device(config.device)
    if device.type == "cuda":
        # TF32 matmuls/convolutions for whatever autocast leaves in float32 (the float32 master weights' maths)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    context = init_distributed(device.type)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    run = None
    try:
        run = _Run(config, context, device, console if context.is_main and not quiet else None, started)
        return run.execute()
    finally:
        # DDP's reducer talks to the process group: free it (cycles included) before the group is destroyed,
        # or its destructor may block on a group that no longer exists.
        del run
        if context.enabled:
            gc.collect()
        shutdown(context)


class _Run:
    def __init__(self, config: TrainConfig, context: DistContext, device: torch.device, console, started=None):
        self.config = config
        self.context = context
        self.device = device
        self.console = console
        self.out = Path(config.out)
        # --max-time counts from the start of the command: loading the data (and in the CLI the imports) are part
        # of the budget
        self.created = time.perf_counter() if started is None else float(started)
        if config.threads:
            torch.set_num_threads(config.threads)

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, soft_wrap=True)

    # ----------------------------------------------------------------------------------------------
    # preparation: everything that can fail on the user's input happens here, before any file is written
    def prepare(self) -> None:
        config = self.config
        self._check_out_is_no_model_folder()
        self.amp_dtype = resolve_amp(config.amp, self.device)
        self.checkpoint = None
        self.complete = False
        if config.resume:
            self.checkpoint = load_checkpoint(self.out)
            self._check_resume_config(self.checkpoint["config"])
            if int(self.checkpoint["step"]) >= config.steps and self._recorded_status() == "completed":
                self.complete = True  # validated and exported already: nothing to load, nothing to rewrite
                return
        elif self.context.is_main:  # rank 0 alone: it creates OUT, which the others must not then find
            self._check_fresh_out()

        started = time.perf_counter()
        repeated: list[str] = []
        self.train_scenes: list[Scene] = load_scenes(config.data, config.data_key, what="training", repeated=repeated)
        if repeated:  # as hsra simulate takes them: each scene of a file once
            self.say(f"note: --data names {', '.join(repeated)} more than once; each scene is trained on once")
        bands = self.train_scenes[0].cube.shape[-1] if self.train_scenes else None
        self.synthetic: list[Scene] = []
        if config.synthetic:
            self.synthetic = synthetic_scenes(config.synthetic, config.synthetic_size, bands, seed=config.seed)
        scenes = self.train_scenes + self.synthetic
        # without any cube to tell, synthetic scenes are made for the field's 28 bands
        self.bands = scenes[0].cube.shape[-1] if scenes else len(default_wavelengths())
        self.val_scenes: list[Scene] = load_scenes(config.val_data, config.data_key, what="validation")
        for scene in scenes + self.val_scenes:
            if scene.cube.shape[-1] != self.bands:
                raise ShapeError(
                    f"{scene.name} has {scene.cube.shape[-1]} bands but the training data have {self.bands}; "
                    "every training and validation cube must have the same bands"
                )
        self.apertures, self.mask_infos = [], []
        for path in config.mask:
            mask_array, info = load_mask(path, config.mask_key)
            self.apertures.append(aperture_from_mask(mask_array, self.bands, config.step, config.axis))
            self.mask_infos.append(info)
        # what a resume compares: the apertures as read, so a mask file rewritten under its name is noticed
        self.mask_fingerprints = [mask_fingerprint(aperture) for aperture in self.apertures]
        # the first mask is the one of fixed mode and of validation
        self.aperture, self.mask_info = self.apertures[0], self.mask_infos[0]
        self.physics = MeasurementModel(
            bands=self.bands,
            step=config.step,
            axis=config.axis,
            mask_mode=config.mask_mode,
            mask_offset=tuple(config.mask_offset),
            gain=config.effective_gain,
            shot_noise=config.effective_shot_noise,
            qe=config.qe,
            bit_depth=config.bit_depth,
            noise_fraction=config.effective_noise_fraction,
        )
        self.physics.check()
        self.val_masks = [
            self.physics.fixed_crop(self.aperture, *scene.cube.shape[:2]) for scene in self.val_scenes
        ]
        self.sampler = PatchSampler(
            [scene.cube for scene in scenes],
            self.apertures,
            self.physics,
            patch_size=config.patch_size,
            batch_size=config.batch_size,
            mosaic=config.mosaic,
            scene_weights=scene_weights(len(self.train_scenes), len(self.synthetic), config.synthetic_fraction),
            seed=config.seed,
            rank=self.context.rank,
            stream=SyntheticStream(
                self.bands, config.stream_fraction, config.seed, self.context.rank, self.context.world_size,
                workers=self._stream_workers(), batch_size=config.batch_size,
            ) if config.synthetic_stream else None,
            generated_masks=config.generated_masks,
            exposure=config.exposure,
            device=self.device,
        )
        if self.device.type == "cpu":  # the sampler's store holds the pixels now: drop the second copy
            for index, scene in enumerate(scenes):
                scene.cube = self.sampler.scene_view(index)
        self.fingerprint = data_fingerprint(scenes)
        self.load_seconds = time.perf_counter() - started

        physics = {"bands": self.bands, "step": config.step, "axis": config.axis}
        if self.checkpoint is not None and self.checkpoint.get("architecture") is not None:
            # the checkpoint holds every weight: --pretrained is not read again (its source may be gone)
            self.model_name, self.model, self.pretrained_info = self._model_from_checkpoint(physics)
        else:
            self.model_name, self.model, self.pretrained_info = build_model(
                config.model, config.pretrained, physics, config.seed
            )
        self.model.to(self.device)
        if self.checkpoint is not None:
            self._check_resume_data()
        elif self.context.is_main and not config.overwrite and (self.out / self.model_name).exists():
            raise OutputExistsError(
                f"{str(self.out / self.model_name)!r} exists; pass --overwrite to replace it at the end of the run"
            )

    def _check_out_is_no_model_folder(self) -> None:
        """A run folder inside an exported model folder would fill it with logs and checkpoints."""
        from ..weights import CONFIG_NAME, WEIGHTS_NAME

        out = self.out.absolute()
        for folder in (out, *out.parents):
            if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
                where = "is a model folder" if folder == out else f"is inside the model folder {str(folder)!r}"
                raise UsageError(
                    f"--out {str(self.out)!r} {where} ({CONFIG_NAME} + {WEIGHTS_NAME}); give a run folder outside "
                    f"it, e.g. {str(folder.parent / (folder.name + '-run'))!r}"
                )

    def _recorded_status(self) -> str | None:
        try:
            record = json.loads((self.out / RUN_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record.get("status") if isinstance(record, dict) else None

    def _stream_workers(self) -> int:
        """Processes that make synthetic scenes ahead: --workers, else none on the CPU (the step would only
        compete with them for the cores) and, beside a GPU, its share of the cores less two (the training process,
        the system), at most 16: how many a training rate needs is what benchmarks/bench_synth.py prints."""
        if self.config.workers is not None:
            return self.config.workers
        if self.device.type != "cuda":
            return 0
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        per_gpu = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return max(0, min(16, per_gpu - 2 if per_gpu > 4 else per_gpu - 1))

    def _check_fresh_out(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"--out {str(out)!r} is a file; expected a folder for the run")
        self.previous_outputs: list[Path] = []
        if not out.is_dir():
            return
        if self.config.overwrite:
            self.previous_outputs = self._previous_run_outputs()
            return
        taken = [name for name in (LOG_NAME, RUN_RECORD, CHECKPOINT_DIR) if (out / name).exists()]
        if taken:
            raise OutputExistsError(
                f"{str(out)!r} already holds a training run ({', '.join(taken)}); pass --resume to continue it "
                "or --overwrite to start over"
            )

    def _previous_run_outputs(self) -> list[Path]:
        """What the run that --overwrite replaces wrote in OUT: its run.json, log.csv, checkpoints and model
        folder(s), file by file. Files of the same names that hsra train did not write are refused (one line):
        --overwrite never deletes what the user put in OUT."""
        from ..weights import MODEL_FILES

        out = self.out
        files: list[Path] = []
        names: set[str] = set()

        def refuse(path: Path, what: str):
            raise OutputExistsError(
                f"--overwrite: {str(path)!r} {what}, so it was not written by hsra train; it is left alone, and the "
                "run is not started over on top of it: move it away or pick another --out"
            )

        record_path = out / RUN_RECORD
        if record_path.exists():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = None
            if not (isinstance(record, dict) and isinstance(record.get("config"), dict) and "status" in record):
                refuse(record_path, "is not a training run's record")
            if isinstance(record.get("model"), str):
                names.add(record["model"])
            files.append(record_path)
        log_path = out / LOG_NAME
        if log_path.exists():
            try:
                with open(log_path, encoding="utf-8") as handle:
                    header = handle.readline().strip()
            except (OSError, UnicodeDecodeError):
                header = None
            if header is None or header.split(",")[:3] != list(LOG_COLUMNS[:3]):
                refuse(log_path, "is not a training log")
            files.append(log_path)
        tensors_path, state_path = checkpoint_paths(out)
        if state_path.is_file():
            try:
                state = json.loads(state_path.read_text(encoding="utf-8"))
                if isinstance(state.get("state", {}).get("model_name"), str):
                    names.add(state["state"]["model_name"])
            except (OSError, ValueError, AttributeError):
                pass
        files += [path for path in (tensors_path, state_path) if path.is_file()]
        for name in sorted(names):
            folder = out / name
            if "/" in name or name in ("", ".", "..") or not (folder / "config.json").is_file():
                continue
            try:
                card = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            # a model folder this run exported (its card names the network and has a training record)
            if isinstance(card, dict) and card.get("name") == name and isinstance(card.get("training"), dict):
                files += [folder / file for file in (*MODEL_FILES, CURVE_NAME) if (folder / file).is_file()]
        return files

    def _remove_previous_run(self) -> None:
        """Delete what :meth:`_previous_run_outputs` found, and the folders it leaves empty (others stay)."""
        folders = []
        for path in getattr(self, "previous_outputs", []):
            path.unlink(missing_ok=True)
            if path.parent != self.out and path.parent not in folders:
                folders.append(path.parent)
        for folder in folders:
            try:
                folder.rmdir()  # only when empty: whatever else the user keeps there stays
            except OSError:
                pass

    def _check_resume_config(self, saved: dict) -> None:
        saved = dict(saved)
        if isinstance(saved.get("mask"), str):  # checkpoints from before several masks were allowed
            saved["mask"] = [saved["mask"]]
        for name, legacy in LEGACY_DEFAULTS.items():
            if name not in saved:
                saved[name] = legacy
                # an option the old run did not have and this call leaves at its default: keep the old meaning
                if getattr(self.config, name) == getattr(TrainConfig(out=""), name):
                    setattr(self.config, name, legacy)
        # The network is compared by the name it resolves to, once built (_check_resume_data): a run whose model
        # came from its --pretrained folder resumes with or without --model, and so does --model given by an alias.
        if self.config.model is None and not self.config.pretrained:
            self.config.model = saved.get("model")
        # a fine-tune resumes from its checkpoint, which holds every weight: --pretrained need not be repeated
        # (nor is it read again); the record keeps the source the run started from
        if self.config.pretrained is None and saved.get("pretrained") is not None:
            self.config.pretrained = saved["pretrained"]
        current = self.config.to_dict()
        # a larger --steps extends a run that is still decaying (its learning rate goes on from where it is)
        self.extended_from = None
        saved_steps, step = int(saved.get("steps") or 0), int(self.checkpoint["step"])
        if self.config.steps > saved_steps > 0:
            if step >= saved_steps:
                raise UsageError(
                    f"--resume --steps {self.config.steps}: {self.out} finished its {saved_steps} steps (its learning "
                    f"rate is at the floor); to train on, fine-tune its weights: --pretrained "
                    f"{self.out / str(self.checkpoint.get('model_name', 'MODEL'))} -o NEW_OUT"
                )
            self.extended_from = saved_steps
        changed = [
            f"--{name.replace('_', '-')} (checkpoint {saved.get(name)!r}, now {current[name]!r})"
            for name in RESUME_MUST_MATCH
            if name != "model" and _comparable(saved.get(name)) != _comparable(current[name])
            and not (name == "steps" and self.extended_from is not None)
        ]
        if changed:
            raise UsageError(
                "--resume needs the options of the run it continues; these differ: " + "; ".join(changed)
            )

    def _model_from_checkpoint(self, physics: dict):
        """The network of a resumed run, built as the checkpoint records it (its weights come with the state)."""
        from ..registry import create_model, get_entry

        name = self.checkpoint["model_name"]
        if self.config.model is not None and get_entry(self.config.model).name != name:
            raise UsageError(f"--resume: the checkpoint trains {name}, not {get_entry(self.config.model).name}")
        torch.manual_seed(self.config.seed)
        model = create_model(name, **dict(self.checkpoint["architecture"]), **physics)
        if self.checkpoint.get("pretrained_info") is not None:
            for parameter in model.parameters():  # as load_pretrained leaves a fine-tuned network
                parameter.requires_grad_(True)
        model.train()
        return name, model, self.checkpoint.get("pretrained_info")

    def _check_resume_data(self) -> None:
        saved = self.checkpoint.get("data_fingerprint")
        if saved != self.fingerprint:
            raise UsageError(
                "--resume: the training data differ from the checkpoint's (other files, scenes or values); "
                "resume with the same --data"
            )
        # checkpoints from before the masks' digests were kept (None) are resumed without this check
        saved_masks = self.checkpoint.get("mask_fingerprints")
        if saved_masks is not None:
            changed = [path for path, saved_mask, now in zip(self.config.mask, saved_masks, self.mask_fingerprints)
                       if saved_mask != now]
            if changed:
                raise UsageError(
                    f"--resume: the mask differs from the checkpoint's (other values in "
                    f"{', '.join(map(repr, changed))}); resume with the mask the run was trained with"
                )
        if self.checkpoint["model_name"] != self.model_name:
            raise UsageError(
                f"--resume: the checkpoint trains {self.checkpoint['model_name']}, not {self.model_name}"
            )

    # ----------------------------------------------------------------------------------------------
    def build_optimisation(self) -> None:
        config = self.config
        self.peak_lr = config.lr_for(config.batch_size * self.context.world_size)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.peak_lr, betas=ADAM_BETAS)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            WarmupCosine(config.steps, config.effective_warmup_steps, self.peak_lr, min(config.min_lr, self.peak_lr)),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # Only rank 0 validates and exports, so only it keeps the average.
        self.ema = WeightEma(self.model, config.ema) if config.ema > 0 and self.context.is_main else None
        self.loss_fn = make_loss(config.loss, config.charbonnier_eps)
        self.step = 0
        self.elapsed_before = 0.0
        self.history: dict = {}
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        self.trained_module = self.model
        if self.context.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.trained_module = DistributedDataParallel(self.model, device_ids=ids)

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if getattr(self, "extended_from", None) is not None:
            self.scheduler.lr_lambdas[0].extend(self.config.steps, at_step=int(state["step"]))
        if state.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise UsageError("--resume: the checkpoint holds no EMA weights but --ema is on")
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.history = dict(state.get("history") or {})
        if getattr(self, "extended_from", None) is not None:  # the card tells how the schedule came to be
            self.history.setdefault("schedule_extended", []).append(
                {"step": int(state["step"]), "steps_before": self.extended_from, "steps": self.config.steps}
            )
        restore_rng(state["rng"])
        samplers = state["samplers"]
        if len(samplers) == self.context.world_size:
            if not self.sampler.load_state_dict(samplers[self.context.rank]) and self.context.is_main:
                self.say(
                    "[yellow]warning:[/yellow] the checkpoint's data-sampler state is from an older version or "
                    "another device type: training continues from it, but not bit-identically"
                )
        else:
            # A different process count cannot replay the same streams; continue with fresh ones, still
            # deterministic in (seed, rank, step).
            if self.context.is_main:
                self.say(
                    f"[yellow]warning:[/yellow] the checkpoint was written by {len(samplers)} process(es), this run "
                    f"has {self.context.world_size}: data streams restart (the run is no longer bit-identical)"
                )
            self.sampler.rng = np.random.default_rng([self.config.seed, self.context.rank, self.step])
            if self.sampler.stream is not None:
                # skip past every stream scene the old processes used: old indices < draws·old world size
                sizes: dict[int, int] = {}
                for state_ in samplers:
                    by_size = (state_.get("stream") or {}).get("draws_by_size") or {
                        str(self.config.patch_size): state_.get("stream_draws") or 0
                    }
                    for size, n in by_size.items():
                        sizes[int(size)] = max(sizes.get(int(size), 0), int(n))
                self.sampler.stream.load_state_dict({"draws_by_size": {
                    str(size): -(-n * len(samplers) // self.context.world_size) for size, n in sizes.items()
                }})

    def _checkpoint_state(self) -> dict:
        samplers = all_gather_objects(self.context, self.sampler.state_dict())
        return {
            "config": self.config.to_dict(),
            "model_name": self.model_name,
            # what a resume builds the network from, without reading --pretrained again
            "architecture": self.model.config.to_dict(),
            "pretrained_info": self.pretrained_info,
            "step": self.step,
            "elapsed_s": self.elapsed(),
            "world_size": self.context.world_size,
            "data_fingerprint": self.fingerprint,
            "mask_fingerprints": self.mask_fingerprints,
            "history": self.history,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": capture_rng(),
            "samplers": samplers,
        }

    def save_checkpoint(self) -> None:
        started = time.perf_counter()
        state = self._checkpoint_state()  # a collective: every rank takes part
        if self.context.is_main:
            save_checkpoint(self.out, state, self.step)
        self.saved_step = self.step
        self.last_checkpoint_s = time.perf_counter() - started

    def _final_phase_estimate(self) -> float:
        """Seconds the end of a session takes (final validation in both conventions with the refined scores, the
        checkpoint, the export), from what this session measured: --max-time stops early enough to fit it."""
        validation = 0.0
        if self.val_scenes:
            if self.last_validation_s > 0:
                # a float validation was timed; the final one adds the field scores and the GAP-TV refinement
                validation = FINAL_VALIDATION_FACTOR * self.last_validation_s
            else:
                # none yet: a forward pass over one step's pixels took about a quarter of the step (measured here)
                pixels = sum(scene.cube.shape[0] * scene.cube.shape[1] for scene in self.val_scenes)
                per_step = self.config.patch_size ** 2 * self.config.batch_size
                validation = FINAL_VALIDATION_FACTOR * (pixels / per_step) * self.step_s / 4 + FIRST_VALIDATION_S
        # the checkpoint (as long as the last one, 1 s if none was written yet), the export of as many weights and
        # what comes with it (card, learning curve)
        checkpoint = self.last_checkpoint_s or 1.0
        return validation + 2 * checkpoint + EXPORT_EXTRA_S

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.session_start)

    # ----------------------------------------------------------------------------------------------
    def train_step(self, batch) -> torch.Tensor:
        device = self.device
        # made on the device by the sampler, with the batch's operator (the network is called with it)
        measurement, cube = batch.measurement, batch.cube
        mask = batch.operator if batch.operator is not None else batch.mask
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            prediction = self.trained_module(measurement, mask)
        loss = self.loss_fn(prediction.float(), cube)
        self.scaler.scale(loss).backward()
        if self.config.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    @torch.no_grad()
    def validate(self, conventions=("float",)) -> dict:
        """Metrics of the exported weights (EMA) on every validation scene, and their means."""
        from ..metrics import psnr, ssim

        module = self.ema.module if self.ema is not None else self.model
        was_training = module.training
        module.eval()
        # The same noise draw at every validation, so the curve shows the network changing, not the noise.
        generator = torch.Generator().manual_seed(self.config.seed)
        scenes = []
        for scene, aperture in zip(self.val_scenes, self.val_masks):
            cube = torch.from_numpy(np.ascontiguousarray(scene.cube.transpose(2, 0, 1)))[None]
            mask = torch.from_numpy(np.ascontiguousarray(aperture))[None]
            # clean unless every training patch is noisy (the real-data recipe): the benchmarks' convention
            noisy = None if self.physics.noisy_always else torch.zeros(1, dtype=torch.bool)
            measurement = self.physics.simulate(cube, mask, generator, noisy)
            with torch.autocast(
                self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ):
                prediction = module(measurement.to(self.device), mask.to(self.device))
            # clipped as the metrics clip (a network early in training may overshoot more than they accept)
            predicted = np.clip(prediction[0].float().permute(1, 2, 0).cpu().numpy(), 0.0, 1.0)
            row = {"name": scene.name}
            for convention in conventions:
                row[f"psnr_{convention}"] = psnr(predicted, scene.cube, convention=convention)
                row[f"ssim_{convention}"] = ssim(predicted, scene.cube, convention=convention)
            if "field" in conventions:  # the final validation also scores what `hsra reconstruct` gives by default
                refined = np.clip(self._refined(module, prediction.float(), measurement.to(self.device),
                                                mask.to(self.device)), 0.0, 1.0)
                row["psnr_field_refined"] = psnr(refined, scene.cube, convention="field")
                row["ssim_field_refined"] = ssim(refined, scene.cube, convention="field")
            scenes.append(row)
        module.train(was_training)
        summary = {"scenes": scenes}
        for convention in conventions + (("field_refined",) if "field" in conventions else ()):
            summary[convention] = {
                "psnr": float(np.mean([row[f"psnr_{convention}"] for row in scenes])),
                "ssim": float(np.mean([row[f"ssim_{convention}"] for row in scenes])),
            }
        return summary

    @staticmethod
    def _refined(module, prediction: torch.Tensor, measurement: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """The prediction after the GAP-TV refinement that `hsra reconstruct` runs by default (H×W×C)."""
        from ..physics import as_operator
        from ..solvers.gap_tv import DEFAULT_REFINE, refine

        operator = as_operator(mask, measurement, module.bands, module.step, module.axis)
        return refine(prediction, measurement, operator, DEFAULT_REFINE)[0].permute(1, 2, 0).cpu().numpy()

    # ----------------------------------------------------------------------------------------------
    def _prepare_everywhere(self) -> None:
        """:meth:`prepare` on every rank; if any rank fails, every rank raises (none waits for the others)."""
        failure = None
        try:
            self.prepare()
        except Exception as exc:  # re-raised below, after the other ranks have heard of it
            failure = exc
        reports = all_gather_objects(
            self.context, None if failure is None else (str(failure), getattr(failure, "exit_code", 1))
        )
        if failure is not None:
            raise failure
        for rank, report in enumerate(reports):
            if report is not None:
                remote = HsraError(f"rank {rank}: {report[0]}")
                remote.exit_code = report[1]
                raise remote

    def execute(self) -> TrainResult:
        self.saved_step: int | None = None  # the step of the checkpoint this session wrote last
        self.record_written = False
        try:
            return self._execute()
        except Exception as exc:
            if self.context.is_main and self.record_written:
                self._record_failure(exc)
            raise

    def _record_failure(self, exc: Exception) -> None:
        """run.json says what went wrong and which checkpoint is left, instead of staying "running"."""
        kept = self.saved_step
        if kept is None and self.checkpoint is not None:
            kept = int(self.checkpoint["step"])
        try:
            self._write_record(status="failed", error=f"{type(exc).__name__}: {exc}", checkpoint_step=kept)
        except Exception:  # the failure itself is what the user must see
            return
        if kept is not None:
            self.say(
                f"the run failed at step {self.step}; its checkpoint of step {kept} is saved: continue with "
                f"hsra train -o {self.out} --resume (a run at its last step retries the validation and export)"
            )

    def _execute(self) -> TrainResult:
        config = self.config
        self._prepare_everywhere()
        if self.complete:
            name = self.checkpoint["model_name"]
            folder = self.out / name
            self.say(
                f"{self.out} is complete at step {self.checkpoint['step']} of {config.steps}; nothing to do (to train "
                f"on, fine-tune its weights: --pretrained {folder} -o NEW_OUT)"
            )
            return TrainResult(
                step=int(self.checkpoint["step"]), completed=True, out_dir=self.out, model_name=name,
                model_folder=folder if (folder / "config.json").is_file() else None,
            )
        self.build_optimisation()
        main = self.context.is_main
        stop_at = config.stop_after if config.stop_after is not None else config.steps
        stop_at = max(stop_at, self.step)
        self.session_start = time.perf_counter()
        self.final_validation: dict | None = None
        log = None
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            if config.overwrite:
                # starting over: the old run's checkpoint must not be resumable into this one, nor its model
                # folder left to be listed as this run's
                self._remove_previous_run()
            log = CsvLog(self.out / LOG_NAME, resume_step=self.step if self.checkpoint is not None else None)
            self._write_record(status="running")
            self._announce(stop_at)
        progress = Progress(self.console, config.steps, self.step, config.log_every, enabled=main)
        stopper = StopRequest(enabled=True)
        window = Window(self.device, self.sampler)
        self.model.train()
        self.last_validation_s = 0.0
        self.last_checkpoint_s = 0.0
        self.step_s = 0.0  # a running mean of the seconds a step takes
        stopped_by = None
        try:
            while self.step < stop_at:
                step_started = time.perf_counter()
                window.add(self.train_step(self.sampler.next_batch()))
                self.step += 1
                taken = time.perf_counter() - step_started
                self.step_s = taken if not self.step_s else 0.9 * self.step_s + 0.1 * taken
                if self.ema is not None:
                    self.ema.update(self.model, self.step)
                final = self.step == config.steps
                validate = bool(self.val_scenes) and (self.step % config.val_every == 0 or final)
                checkpoint = self.step % config.ckpt_every == 0 or self.step == stop_at
                if self.step % config.log_every == 0 or self.step == stop_at or validate:
                    # a checkpoint due at this step is written before the validation: a validation that fails
                    # (or a Ctrl-C in it) cannot lose the steps
                    self._report(window, validate, final, progress, log, checkpoint_first=checkpoint)
                else:
                    progress.update(self.step, f"{window.rate:.2f} samples/s" if math.isfinite(window.rate) else "")
                if checkpoint and self.saved_step != self.step:
                    self.save_checkpoint()
                reason = self._stop_reason(stopper) if self.step < stop_at else None
                if reason == "SIGINT":
                    if self.saved_step != self.step:
                        self.save_checkpoint()
                    self._write_record(status="interrupted")
                    progress.close()
                    self.say(f"{reason}: checkpoint saved at step {self.step}; continue with --resume")
                    raise KeyboardInterrupt
                if reason is not None:
                    # the budget or the scheduler's SIGTERM: end as at the last step (validate, checkpoint, export)
                    stopped_by = reason
                    progress.message(
                        f"{'--max-time reached' if reason == 'time' else reason}: stopping at step {self.step} of "
                        f"{config.steps}; validating, checkpointing and exporting (continue with --resume)"
                    )
                    # the checkpoint first: whatever the validation or the export do, the session's steps are kept
                    if window.steps:
                        self._report(window, bool(self.val_scenes), True, progress, log, checkpoint_first=True)
                    else:
                        if self.saved_step != self.step:
                            self.save_checkpoint()
                        if self.val_scenes and self.final_validation is None and main:
                            self.final_validation = self.validate(conventions=("float", "field"))
                    if self.saved_step != self.step:
                        self.save_checkpoint()
                    break
        finally:
            stopper.restore()
            progress.close()
            if log is not None:
                log.close()
            self.sampler.close()

        # collectives: every rank takes part before rank 0 writes alone
        digests = all_gather_objects(self.context, state_dict_digest(self.model))
        self.stream_total = self._stream_draws() if config.synthetic_stream else None
        result = TrainResult(
            step=self.step,
            completed=self.step >= config.steps,
            out_dir=self.out,
            model_name=self.model_name,
            weight_digests=digests,
            stopped_by=stopped_by,
        )
        if len(set(digests)) > 1:
            raise HsraError(f"the processes ended with different weights ({len(set(digests))} versions); a DDP bug")
        export = self.ema.module if self.ema is not None else self.model
        if main:
            if result.completed or stopped_by is not None:
                if self.val_scenes:
                    result.validation = self.final_validation or self.validate(conventions=("float", "field"))
                    self._announce_validation(result.validation)
                result.model_folder = self._export(export, result)
                status = "completed" if result.completed else ("time limit" if stopped_by == "time" else stopped_by)
                self._write_record(status=status, result=result)
                if not result.completed:
                    self.say(f"stopped at step {self.step} of {config.steps} ({status}); continue with --resume")
            else:
                self._write_record(status="stopped", result=result)
                self.say(f"stopped at step {self.step} of {config.steps}; continue with --resume")
        # a copy: the live parameters carry DDP's gradient hooks, which must not outlive the process group
        result.trained = copy.deepcopy(self.model) if self.context.enabled else self.model
        result.model = (result.trained if export is self.model else export).eval()
        return result

    def _stop_reason(self, stopper: StopRequest) -> str | None:
        """"SIGINT", "SIGTERM", "time" (--max-time, keeping room for the final validation and export) or None;
        under DDP every rank gets the same answer (the most urgent one of any rank)."""
        reasons = (None, "time", "SIGTERM", "SIGINT")
        reason = stopper.requested if stopper.requested in reasons else None
        if reason is None and self.config.max_time is not None:
            # and a few seconds for the process's exit (tearing torch down takes that on a busy CPU)
            reserve = 1.25 * self._final_phase_estimate() + EXIT_S
            if time.perf_counter() - self.created + reserve >= self.config.max_time:
                reason = "time"
        if self.context.enabled:
            # a collective reads back to the host: agree only every few steps, at the same steps on every rank
            if self.step % 10 and self.step % self.config.log_every:
                return None
            import torch.distributed as dist

            code = torch.tensor([reasons.index(reason)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(code, op=dist.ReduceOp.MAX)
            reason = reasons[int(code)]
        return reason

    def _report(
        self, window: Window, validate: bool, final: bool, progress: Progress, log: CsvLog | None,
        checkpoint_first: bool = False,
    ) -> None:
        """End of a logging interval: mean loss over all ranks, throughput, validation (rank 0), log row.

        ``checkpoint_first``: write the checkpoint once the loss is known to be finite, before validating (the
        validation then joins the checkpoint's history without rewriting its tensors)."""
        mean_loss = self._reduce_mean(window.loss_sum, window.steps)
        if not math.isfinite(mean_loss):
            raise HsraError(f"training diverged at step {self.step} (loss is {mean_loss}); lower --lr or set --clip-grad")
        rate = window.close(self.config.batch_size * self.context.world_size)
        if checkpoint_first:
            self.save_checkpoint()
        val = None
        if validate and self.context.is_main:
            # the last validation also measures the field convention, for the card
            started = time.perf_counter()
            summary = self.validate(("float", "field") if final else ("float",))
            self.last_validation_s = time.perf_counter() - started
            if final:
                self.final_validation = summary
            val = summary["float"]
            self.history.setdefault("validation", []).append({"step": self.step, **val})
            if checkpoint_first:
                update_checkpoint_state(self.out, history=self.history)
            progress.message(
                f"step {self.step}: validation PSNR {val['psnr']:.2f} dB, SSIM {val['ssim']:.4f} "
                f"(float, {len(self.val_scenes)} scene(s))"
            )
        lr = self.scheduler.get_last_lr()[0]
        if log is not None:
            log.write(
                step=self.step,
                loss=mean_loss,
                lr=lr,
                val_psnr=val["psnr"] if val else None,
                val_ssim=val["ssim"] if val else None,
                samples_per_s=rate,
                elapsed_s=self.elapsed(),
                data_share=window.data_share,
            )
        progress.update(self.step, f"loss {mean_loss:.4g}  lr {lr:.3g}  {rate:.2f} samples/s", force=True)
        window.restart()  # after validation, so its time does not count against throughput

    def _stream_draws(self) -> int:
        """Fresh synthetic scenes drawn by all processes so far (a collective)."""
        return int(sum(all_gather_objects(self.context, self.sampler.stream.draws)))

    def _reduce_mean(self, total: torch.Tensor, count: int) -> float:
        value = total / count
        if self.context.enabled:
            import torch.distributed as dist

            dist.all_reduce(value)
            value = value / self.context.world_size
        return float(value)

    # ----------------------------------------------------------------------------------------------
    def _announce(self, stop_at: int) -> None:
        config = self.config
        text = (
            f"training {self.model_name} on {self._data_summary()}; {len(self.val_scenes)} validation scene(s); "
            f"{self.bands} bands, patch {config.patch_size}, batch {config.batch_size}×{self.context.world_size}, "
            f"mask {config.mask_mode}"
            + (f" ({len(self.apertures)} masks)" if len(self.apertures) > 1 else "")
            + (f", {config.generated_masks:.0%} generated masks" if config.generated_masks else "")
            + (f", exposure ×1/{config.exposure:g}–×{config.exposure:g}" if config.exposure != 1 else "")
            + f", gain {self.physics.gain:g}"
            + (f", shot noise (QE {config.qe:g}, {config.bit_depth} levels"
               + (f", {self.physics.noise_fraction:.0%} of patches" if self.physics.noise_fraction < 1 else "") + ")"
               if self.physics.shot_noise else "")
            + f"; peak lr {self.peak_lr:.3g}"
            + f"; device {self.device}"
            + (f", AMP {str(self.amp_dtype).replace('torch.', '')}" if self.amp_dtype else "")
        )
        self.say(text)
        if self.step:
            self.say(f"resuming at step {self.step} of {config.steps}")
        if getattr(self, "extended_from", None) is not None:
            self.say(f"the run planned {self.extended_from} steps: its learning rate goes on from "
                     f"{self.scheduler.get_last_lr()[0]:.3g} and decays to the floor at step {config.steps}")
        if stop_at < config.steps:
            self.say(f"this session stops at step {stop_at} (--stop-after)")

    def _announce_validation(self, validation: dict) -> None:
        for convention in ("float", "field"):
            numbers = validation[convention]
            self.say(
                f"final validation ({convention} convention): PSNR {numbers['psnr']:.2f} dB, SSIM {numbers['ssim']:.4f} "
                f"over {len(validation['scenes'])} scene(s)"
            )

    def _card(self, result: TrainResult) -> dict:
        from ..solvers.gap_tv import refine_card_fields
        from ..weights import display_source

        config = self.config
        # cards say what the data were, not where they lay on the training machine (run.json keeps the paths)
        masks = [{**info, "path": display_source(info["path"])} for info in self.mask_infos]
        card = {
            "training": {
                "data": display_source(self._data_summary()),
                "data_sources": [display_source(source) for source in config.data],
                "data_key": config.data_key,
                "scenes": [scene.name for scene in self.train_scenes],
                "synthetic_scenes": len(self.synthetic),
                "synthetic_size": config.synthetic_size if self.synthetic else None,
                "synthetic_fraction": config.stream_fraction if config.synthetic_stream else config.synthetic_fraction,
                "synthetic_stream_scenes": self.stream_total,
                "mask": masks[0],
                "masks": masks,
                "mask_mode": config.mask_mode,
                "generated_masks": config.generated_masks,
                "exposure": config.exposure,
                "noise_fraction": self.physics.noise_fraction if self.physics.shot_noise else None,
                "mask_offset": list(config.mask_offset),
                "gain": self.physics.gain,
                "shot_noise": {"qe": config.qe, "bit_depth": config.bit_depth} if self.physics.shot_noise else None,
                "patch_size": config.patch_size,
                "batch_size": config.batch_size,
                "processes": self.context.world_size,
                "mosaic": config.mosaic,
                "loss": config.loss,
                "optimizer": {"name": "Adam", "lr": config.lr, "lr_scaling": config.lr_scaling,
                              "peak_lr": self.peak_lr, "betas": list(ADAM_BETAS), "min_lr": config.min_lr,
                              "warmup_steps": self.scheduler.lr_lambdas[0].warmup_steps,
                              "schedule": "linear warm-up, cosine",
                              "schedule_extended": self.history.get("schedule_extended")},
                "clip_grad": config.clip_grad,
                "ema": config.ema,
                "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                "steps": result.step,
                "steps_planned": config.steps,
                "stopped_by": result.stopped_by,
                "samples_seen": result.step * config.batch_size * self.context.world_size,
                "seed": config.seed,
                "pretrained": {**self.pretrained_info, "source": display_source(self.pretrained_info["source"])}
                if self.pretrained_info else None,
                "wall_time_s": round(self.elapsed(), 1),
                "hardware": hardware_description(self.device, self.context.world_size),
                "torch": torch.__version__,
                "command": display_source(" ".join(sys.argv)),
            },
        }
        if result.validation:
            card["validation"] = {
                "data": display_source(", ".join(config.val_data)),
                "scenes": result.validation["scenes"],
                "psnr_float": result.validation["float"]["psnr"],
                "ssim_float": result.validation["float"]["ssim"],
                "psnr_field": result.validation["field"]["psnr"],
                "ssim_field": result.validation["field"]["ssim"],
                **refine_card_fields(),
                "psnr_field_refined": result.validation["field_refined"]["psnr"],
                "ssim_field_refined": result.validation["field_refined"]["ssim"],
                "note": "EMA weights; float convention = training logs, field convention = papers' tables; "
                "*_refined: after the refinement hsra reconstruct runs by default (--refine)",
            }
        return card

    def _data_summary(self) -> str:
        """One line for the card: which cubes, how many, and the synthetic share."""
        parts = []
        if self.config.data:
            parts.append(f"{', '.join(self.config.data)} ({len(self.train_scenes)} scene{'' if len(self.train_scenes) == 1 else 's'})")
        if self.synthetic:
            parts.append(f"{len(self.synthetic)} synthetic {self.config.synthetic_size}² scenes (hsra_cli.synth)")
        if self.config.synthetic_stream:
            parts.append(
                f"a stream of fresh synthetic scenes (hsra_cli.synth) for {self.config.stream_fraction:.0%} of the crops"
            )
        return " + ".join(parts)

    def _export(self, module: torch.nn.Module, result: TrainResult) -> Path:
        from ..weights import save_model_folder

        folder = self.out / self.model_name
        save_model_folder(module, folder, card=self._card(result), overwrite=True)
        plot_learning_curve(
            self.out / LOG_NAME, folder / CURVE_NAME, f"{self.model_name}: training loss and validation PSNR"
        )
        self.say(f"wrote {folder}")
        return folder

    def _write_record(self, status: str, result: TrainResult | None = None, **extra) -> None:
        from ..io import atomic_output

        record = {
            "status": status,
            "step": self.step,
            "model": getattr(self, "model_name", self.config.model),
            "config": self.config.to_dict(),
            "device": str(self.device),
            "hardware": hardware_description(self.device, self.context.world_size),
            "world_size": self.context.world_size,
            "data_load_s": round(self.load_seconds, 2),
            "elapsed_s": round(self.elapsed(), 2),
            "torch": torch.__version__,
            "command": sys.argv,
        }
        if result is not None:
            record["weight_sha256_per_rank"] = result.weight_digests
            record["model_folder"] = str(result.model_folder) if result.model_folder else None
            record["validation"] = result.validation or None
        record.update(extra)
        with atomic_output(self.out / RUN_RECORD, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        self.record_written = True


def _comparable(value):
    """Config values as JSON would give them back (tuples as lists)."""
    if isinstance(value, tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value
