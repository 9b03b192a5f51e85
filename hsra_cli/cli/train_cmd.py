"""`hsra train`: train a registered network with the field's recipe (thin layer over hsra_cli.train)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from hsra_cli.cli import app
from hsra_cli.cli._common import (
    QE_METAVAR, THREADS_HELP, AxisChoice, complete_network, console, parse_offset, quantum_efficiency, require_files,
    value_of,
)
from hsra_cli.train.config import AMP_MODES, DEVICES, LOSSES, LR_SCALINGS, MASK_MODES

# Choice options as Enums built from the library's tuples: --help lists them, a wrong value is a usage error.
MaskModeChoice = Enum("MaskModeChoice", {value.upper(): value for value in MASK_MODES}, type=str)
LossChoice = Enum("LossChoice", {value.upper(): value for value in LOSSES}, type=str)
AmpChoice = Enum("AmpChoice", {value.upper(): value for value in AMP_MODES}, type=str)
LrScalingChoice = Enum("LrScalingChoice", {value.upper(): value for value in LR_SCALINGS}, type=str)
DeviceChoice = Enum("DeviceChoice", {value.upper(): value for value in DEVICES}, type=str)


@app.command(
    epilog="""[b]Examples[/b]

  hsra train --model hsra-s --data kaist.npz:0-3 --val-data kaist.npz:4 --mask mask_256.mat -o runs/s \\
      --synthetic 200 --steps 20000                                [dim]# simulation recipe[/dim]

  hsra train --model hsra-s --data cave/ --mask mask_660.mat --mask-mode random -o runs/real
      [dim]# real-system recipe: random mask crops, gain 1.2, shot noise[/dim]

  hsra train -o runs/s --resume                       [dim]# continue a run with its recorded options[/dim]

  hsra train --pretrained hsra-s --data mine/ --mask my_mask.mat -o runs/ft --steps 2000 --lr 1e-4

  torchrun --nproc_per_node=4 -m hsra_cli.train --model hsra-dum-3stg --data cave/ --mask mask_256.mat -o runs/d
""",
)
def train(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(
        None, "-o", "--out", help="Run folder: log.csv, run.json, checkpoints/, <model>/ at the end."
    ),
    config_file: Optional[Path] = typer.Option(
        None, "--config",
        help="Options from a TOML/JSON file, or a run's run.json to replay it; flags given here override it.",
    ),
    model: Optional[str] = typer.Option(None, "--model", autocompletion=complete_network, help="Registered network to train (see 'hsra models')."),
    data: List[str] = typer.Option([], "--data", help="Training cubes: file, folder, or stack FILE:0-3 (repeatable)."),
    data_key: Optional[str] = typer.Option(None, "--data-key", help="Variable holding the cubes (default: the usual names)."),
    mask: List[Path] = typer.Option(
        [], "-m", "--mask",
        help="Coded aperture (2-D, or a 3-D shifted mask with one aperture); repeatable: random mode draws a mask "
        "per patch, fixed mode and validation use the first.",
    ),
    mask_key: Optional[str] = typer.Option(None, "--mask-key", help="Variable holding the mask."),
    synthetic: int = typer.Option(0, "--synthetic", help="Add N synthetic scenes (hsra_cli.synth) to the training pool."),
    synthetic_fraction: Optional[float] = typer.Option(
        None, "--synthetic-fraction", help="Share of crops from synthetic scenes (default: by scene count; stream: 0.5)."
    ),
    synthetic_size: int = typer.Option(256, "--synthetic-size", help="Side of the synthetic scenes, pixels."),
    synthetic_stream: bool = typer.Option(
        False, "--synthetic-stream/--no-synthetic-stream",
        help="A fresh synthetic scene for every synthetic crop (instead of --synthetic N).",
    ),
    val_data: List[str] = typer.Option([], "--val-data", help="Held-out full-size cubes to validate on (repeatable)."),
    val_every: int = typer.Option(1000, "--val-every", help="Validate every N steps (and at the end)."),
    patch_size: int = typer.Option(128, "--patch-size", help="Training patch side, pixels (even)."),
    batch_size: int = typer.Option(5, "--batch-size", help="Patches per step and per process."),
    mosaic: bool = typer.Option(True, "--mosaic/--no-mosaic", help="Half of each batch: mosaics of four half-size crops."),
    mask_mode: MaskModeChoice = typer.Option(
        "fixed", "--mask-mode", help="fixed (simulation: one mask window) or random (a window per patch)."
    ),
    mask_offset: str = typer.Option(
        "0,0", "--mask-offset", metavar="ROW,COL", help="Window of fixed mode and of validation."
    ),
    generated_masks: float = typer.Option(
        0.0, "--generated-masks", help="Share of patches (random mode) measured through a generated binary or grey mask."
    ),
    exposure: float = typer.Option(
        1.0, "--exposure", metavar="F",
        help="Scale each patch by a gain drawn log-uniformly in [1/F, F], capped so no value passes 1 (1: off).",
    ),
    noise_fraction: Optional[float] = typer.Option(
        None, "--noise-fraction", help="Share of patches that get the gain and shot noise (default: all, when on)."
    ),
    gain: Optional[float] = typer.Option(None, "--gain", help="Measurement gain (default: 1.2 random, 1 fixed)."),
    shot_noise: Optional[bool] = typer.Option(
        None, "--shot-noise/--no-shot-noise", help="Binomial shot noise (default: on for random, off for fixed)."
    ),
    qe: float = typer.Option(
        0.4, "--qe", metavar=QE_METAVAR, callback=quantum_efficiency, help="Quantum efficiency of the shot-noise model."
    ),
    bit_depth: int = typer.Option(2048, "--bit-depth", help="Sensor levels of the shot-noise model."),
    step: int = typer.Option(2, "--step", help="Dispersion in pixels per band."),
    axis: AxisChoice = typer.Option("width", "--axis", help="Dispersion axis."),
    loss: LossChoice = typer.Option("rmse", "--loss", help="Training loss (rmse: the field's √MSE)."),
    charbonnier_eps: float = typer.Option(
        1e-3, "--charbonnier-eps", metavar="EPS", help="ε of the charbonnier loss, mean of √(error² + ε²)."
    ),
    lr: float = typer.Option(4e-4, "--lr", help="Peak learning rate for 5 samples per step (Adam, betas 0.9/0.999)."),
    lr_scaling: LrScalingChoice = typer.Option(
        "sqrt", "--lr-scaling", help="How --lr follows batch × processes (sqrt: by √(batch/5))."
    ),
    min_lr: float = typer.Option(1e-6, "--min-lr", help="Learning rate at the end of the cosine decay."),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear warm-up steps (default: 5%, ≤ 1000)."),
    steps: int = typer.Option(10000, "--steps", help="Optimizer steps of the whole run (sets the schedule; larger on --resume: extends it)."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", help="Clip the gradient norm to this value."),
    ema: float = typer.Option(0.999, "--ema", help="EMA decay of the weights validated and exported (0: off)."),
    amp: AmpChoice = typer.Option(
        "auto", "--amp",
        help="Mixed precision, CUDA only (auto: bf16 where the GPU supports it, else fp16 with a GradScaler; off on the CPU).",
    ),
    log_every: int = typer.Option(50, "--log-every", help="Log a row to log.csv every N steps."),
    ckpt_every: int = typer.Option(1000, "--ckpt-every", help="Checkpoint every N steps (and at the end)."),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", help="End this session at step N (resume later)."),
    max_time: Optional[str] = typer.Option(
        None, "--max-time",
        help="Wall-time budget of this session (90s, 8m, 2h): then validate, checkpoint and export as at the end.",
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Processes making synthetic scenes ahead (default: 0 on the CPU, the cores less two (≤ 16) on a GPU)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    pretrained: Optional[str] = typer.Option(
        None, "--pretrained", help="Start from weights: a model name, a model folder or a .safetensors file."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights, the data stream and the noise, in [0, 4294967295]."),
    device: DeviceChoice = typer.Option("auto", "--device", help="Where to train."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in a --out that holds a run."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors on stderr (and the notes on what --config does not take)."),
):
    """Train a network on cubes with the field's recipe; export OUT/<model>/ with a model card.

    Random crops with rot90/flips and four-crop mosaics, measured through the mask by the CASSI physics.

    Adam, warm-up + cosine decay, EMA weights, resumable checkpoints. Prints the model folder on stdout.

    See docs/training.md.
    """
    from hsra_cli.errors import UsageError
    from hsra_cli.train import TrainConfig
    from hsra_cli.train import train as run_training
    from hsra_cli.train.config import load_config_file, parse_duration
    from hsra_cli.train.loop import RUN_RECORD

    options = dict(
        out=str(out) if out is not None else None,
        model=model,
        data=list(data),
        data_key=data_key,
        mask=[str(m) for m in mask],
        mask_key=mask_key,
        synthetic=synthetic,
        synthetic_fraction=synthetic_fraction,
        synthetic_size=synthetic_size,
        synthetic_stream=synthetic_stream,
        val_data=list(val_data),
        val_every=val_every,
        patch_size=patch_size,
        batch_size=batch_size,
        mosaic=mosaic,
        mask_mode=value_of(mask_mode),
        mask_offset=parse_offset(mask_offset),
        generated_masks=generated_masks,
        exposure=exposure,
        noise_fraction=noise_fraction,
        gain=gain,
        shot_noise=shot_noise,
        qe=qe,
        bit_depth=bit_depth,
        step=step,
        axis=value_of(axis),
        loss=value_of(loss),
        charbonnier_eps=charbonnier_eps,
        lr=lr,
        lr_scaling=value_of(lr_scaling),
        min_lr=min_lr,
        warmup_steps=warmup_steps,
        steps=steps,
        clip_grad=clip_grad,
        ema=ema,
        amp=value_of(amp),
        log_every=log_every,
        ckpt_every=ckpt_every,
        stop_after=stop_after,
        max_time=parse_duration(max_time) if max_time is not None else None,
        workers=workers,
        resume=resume,
        pretrained=pretrained,
        seed=seed,
        device=value_of(device),
        threads=threads,
        overwrite=overwrite,
    )
    given = {
        name for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    }
    notes, label = True, None
    if config_file is None and resume and out is not None and (out / RUN_RECORD).is_file():
        # `hsra train -o OUT --resume`: the run's own options, as `--config OUT/run.json --resume` would take them
        config_file, notes = out / RUN_RECORD, False
        label = f"the {RUN_RECORD} of the run being resumed ({str(config_file)!r})"  # no --config was given
    elif (config_file is None and resume and out is not None and not (out / "checkpoints").is_dir()
          and not given & {"data", "synthetic", "synthetic_stream"}):  # `-o OUT --resume` alone, where no run is
        raise UsageError(f"--resume: {out} holds no run to resume (no {RUN_RECORD}, no checkpoints/); expected the "
                         "-o folder of an earlier hsra train")
    recorded = None
    if (config_file is None and resume and out is not None and (out / "checkpoints").is_dir()
            and not (out / RUN_RECORD).is_file() and not given & {"data", "synthetic", "synthetic_stream"}):
        # checkpoints without their run.json (deleted, or only checkpoints/ copied from another machine): the
        # checkpoint records the run's options too
        from hsra_cli.train.checkpoint import checkpoint_config
        from hsra_cli.train.config import options_from_table

        recorded = options_from_table(checkpoint_config(out), f"the checkpoint in {out}", given=given,
                                      notes=False, record=True)
        if not quiet:
            console.print(f"note: {out} has no {RUN_RECORD}: resuming with the options its checkpoint records",
                          soft_wrap=True, markup=False, highlight=False)
    if config_file is not None or recorded is not None:
        # the file's values, then every flag that was actually given on the command line
        merged = recorded if recorded is not None else load_config_file(
            config_file, given=given, notes=notes, label=label
        )
        for name, value in options.items():
            if name in given:
                merged[name] = value
        options = merged
    if not options.get("out"):
        raise UsageError("give -o/--out DIR (the run folder), here or in --config")
    config = TrainConfig(**options)
    config.check()  # option values first (exit 2), then the mask files as the other commands check them (exit 1)
    require_files([Path(path) for path in config.mask], "mask")
    if config.device != "cuda":
        from hsra_cli.nets.runtime import keep_freed_memory

        # big activation buffers are reused instead of page-faulted in every step: measured here with one
        # thread, hsra-s at 128² trained at 2.2-2.4 samples/s this way, 2.1 with glibc's defaults, 1.7 under jemalloc
        keep_freed_memory()
    from hsra_cli.provenance import command_started

    # --max-time is the command's wall time: the interpreter's start and the imports count too
    result = run_training(config, console=console, quiet=quiet, started=command_started())
    if result.model_folder is not None:
        typer.echo(str(result.model_folder))
    if result.stopped_by == "SIGTERM":  # everything is saved, but the job was told to end: say so to the scheduler
        raise typer.Exit(143)
