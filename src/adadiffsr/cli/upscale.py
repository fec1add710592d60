"""``adadiffsr upscale``: files, folders or globs in, upscaled files out (one process, or one rank
of ``torchrun`` / ``accelerate launch``)."""

from __future__ import annotations

from typing import Any

import click

from ..color import COLOR_FIXES
from ..config import GAINS, LEGACY_GAINS, SamplingOptions, UpscaleConfig, deprecated
from ..core.schedule import UPDATE_RULES
from ..distributed import current_rank, gather_counts, rank_device, shard, share_cpu
from ..engine.sampler import SPACINGS
from ..files import plan_jobs, run_jobs, summary_line
from ..io import MAX_INPUT_PIXELS, OUTPUT_EXTENSIONS
from ..policies.dtss import FR_CHANGES
from ..policies.groups import GroupSettings
from ..policies.registry import POLICIES
from ..prior import COMPACT_PRIOR
from ..prior.routing import SIGNALS, PriorRouting
from .options import (
    DEBUG,
    as_flags,
    float_list,
    int_list,
    joined,
    load_upscaler,
    model_options,
    progress_factory,
    say_to_stderr,
)

D = UpscaleConfig  # the defaults below are its fields' and its parts' (D.dtss: DTSS as shipped)
POLICY_HELP = "; ".join(f"{name}: {kind.help}" for name, kind in POLICIES.items())


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", required=True,
              help="Output file (one input) or folder (several inputs, a folder or a glob).")
@click.option("--scale", type=click.FloatRange(0, 16, min_open=True), help="Final scale (default: the model's, 4).")
@click.option("--policy", type=click.Choice(tuple(POLICIES)),
              help=f"The region policy: {POLICY_HELP}. [default: the model's]")
@click.option("--sampler", "old_policy", type=click.Choice(tuple(POLICIES)), hidden=True,
              help="The old name of --policy, read until adadiffsr 0.3.")
@click.option("--interval", type=click.IntRange(min=1), help="DDPM steps per jump (the uniform policy). [default: 20]")
@click.option("--steps", type=click.IntRange(min=0),
              help="Uniform sampling in exactly N steps instead of --interval; 0 = the prior's output alone.")
@click.option("--strength", type=click.FloatRange(0, 1),
              help="Start at timestep strength*T (T = 1000 for the shipped model) from the noised prior estimate (default: the model's).")
@click.option("--timesteps", "timestep_list", help="A fixed walk for every tile, e.g. 399,149,29 (the timesteps policy).")
@click.option("--budget", type=click.FloatRange(min=0),
              help="Mean diffusion steps per region, met on every image (the grouped policy): the steps go "
                   "where the prior's estimate is most textured; 0 = the prior alone.")
@click.option("--min-budget", type=click.FloatRange(min=0),
              help="The grouped policy without --budget: at least this many mean steps per region on every "
                   "image, to its most textured regions (never to flat ones), where the thresholds give fewer; 0 = off. "
                   f"[default: {GroupSettings.min_budget:g}]")
@click.option("--group-thresholds",
              help="The grouped policy without --budget: the difficulty (mean luma gradient of the prior's "
                   f"estimate) at which a region gets its 1st, 2nd, 3rd step. [default: {joined(GroupSettings.thresholds)}]")
@click.option("--student/--no-student", default=None,
              help="The grouped policy: the regions of --student-groups take one step of the distilled student "
                   "(NAME.student.safetensors) instead of the refiner's walk. [default: the model's; the shipped "
                   "model's: off]")
@click.option("--student-groups", help="The groups (steps on the walk) the student takes over. "
                                       f"[default: {joined(GroupSettings.student_groups)}]")
@click.option("--prior", "prior_name",
              help="Stage 1: realesrgan-x4plus (over the whole image: with --steps 0, Real-ESRGAN alone), routed "
                   "(the compact prior over the whole image, Real-ESRGAN x4plus on the regions that need it) or "
                   f"{COMPACT_PRIOR} (the compact prior alone: about 1/13 of the time, as good on mild inputs, "
                   "softer on heavily degraded ones). [default: the model's; the shipped model's: realesrgan-x4plus]")
@click.option("--prior-share", type=click.FloatRange(0, 1),
              help="Routed: at most this fraction of the regions take Real-ESRGAN x4plus, the most textured first "
                   "(0: the compact prior alone). [default: the model's for the device]")
@click.option("--prior-threshold", type=click.FloatRange(min=0), default=PriorRouting.prior_threshold, show_default=True,
              help="Routed: the difficulty (mean luma gradient of the compact estimate) from which a region "
                   "takes Real-ESRGAN x4plus.")
@click.option("--prior-signal", type=click.Choice(SIGNALS), default=PriorRouting.prior_signal, show_default=True,
              help="Routed: what a region's difficulty is read off: the compact prior's estimate, or the input's "
                   "bicubic upsample (noise and all, so a noisy sky takes x4plus too).")
@click.option("--intervals", default=joined(D.dtss.intervals), show_default=True,
              help="The adaptive policy's interval set (the paper's: 5,10,15,20).")
@click.option("--tau", type=click.FloatRange(min=0), default=D.dtss.tau, show_default=True,
              help="DTSS gain threshold (the paper's: 5e-3).")
@click.option("--fr-change", type=click.Choice(FR_CHANGES), default=D.dtss.fr_change, show_default=True,
              help="DTSS: does a falling FR gain count as information arriving (any) or only a rising one (rise, the paper's)?")
@click.option("--drop", type=click.FloatRange(min=0), default=D.dtss.drop, show_default=True,
              help="DTSS: NR fall below its best that makes a region saturated (exit early).")
@click.option("--scheduler", type=click.Choice(UPDATE_RULES),
              help="The update rule through the skip-step codebook (diffusers' DDIM or DDPM scheduler). [default: the model's]")
@click.option("--eta", type=click.FloatRange(0, 1), help="DDIM stochasticity. [default: the model's, 0]")
@click.option("--tile", type=click.IntRange(min=1), help="Tile side in input pixels (default: the model's).")
@click.option("--overlap", type=click.IntRange(min=0), help="Tile overlap in input pixels (default: tile/4).")
@click.option("--batch-tiles", default=str(D.batch_tiles), show_default=True,
              help="Tiles per backbone call, or 'auto' to size batches from free memory.")
@click.option("--seed", type=int, default=D.seed, show_default=True)
@model_options
@click.option("--spacing", type=click.Choice(SPACINGS), default=SamplingOptions.spacing, show_default=True,
              help="First timestep: T-1, or diffusers' default (the largest multiple of the interval below T).")
@click.option("--color-fix", type=click.Choice(COLOR_FIXES), default=D.color_fix, show_default=True)
@click.option("--gain", type=click.Choice(GAINS + tuple(LEGACY_GAINS)), default=D.gain, show_default=True,
              help="Information gain per step (MMLE): auto (the learned regressor where the policy or PFJ needs "
                   "a gain, the exact metrics without one), exact, or learned. none: the old name of auto, "
                   "read until adadiffsr 0.3.")
@click.option("--fidelity", type=click.FloatRange(0, 4),
              help="Fidelity against invented texture: 0 = the most texture; 1 = closest to the truth (the "
                   "prior's faithful tail and PFJ at full strength; between: interpolated; PFJ alone above 1) "
                   "[default: the model's: 0 for the shipped model, 0.5 where the weights file names none]")
@click.option("--ext", type=click.Choice(OUTPUT_EXTENSIONS), default="png", show_default=True,
              help="Output format in folder mode.")
@click.option("--suffix", default="", help="Appended to output names in folder mode (photo -> photo_SUFFIX.png).")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists (resume a run).")
@click.option("--max-pixels", type=click.IntRange(min=0), default=MAX_INPUT_PIXELS, show_default=True,
              help="Refuse larger inputs (decompression bombs); 0 = no limit.")
@click.option("--report", "report_path", help="JSON report (NFE, seconds, tiles); a folder in folder mode.")
@click.option("--step-map", "step_map_path", help="Picture of steps per region; a folder in folder mode.")
@click.option("--force", is_flag=True, help="Allow an output to replace an input file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@DEBUG
def upscale(inputs: tuple[str, ...], output: str, **flags: Any) -> None:
    """Super-resolve INPUT files, folders or globs into OUTPUT with the diffusion engine."""
    old_policy = flags.pop("old_policy")
    if old_policy is not None:
        deprecated("--sampler", "--policy")
        if flags["policy"] not in (None, old_policy):
            raise click.UsageError(f"--sampler {old_policy} and --policy {flags['policy']} disagree; give --policy alone")
        flags["policy"] = old_policy
    config = config_from_flags(flags)
    rank = current_rank()
    jobs, folder_mode = plan_jobs(list(inputs), output, flags["ext"], flags["suffix"], flags["report_path"],
                                  flags["step_map_path"], flags["force"])
    device = flags["device"]
    if rank.distributed:  # torchrun / accelerate launch: file i to rank i mod world size
        jobs, folder_mode = shard(jobs, rank), True
        share_cpu(rank)
        device = rank_device(device, rank)
    upscaler = load_upscaler(flags["weights"], device, flags["dtype"], flags["backbone"], flags["runtime"],
                             flags["prompt"], flags["negative_prompt"], flags["guidance_scale"], flags["noise_level"])
    tail = upscaler.backbone.prior is not None and upscaler.backbone.prior.fidelity_tail is not None
    if upscaler.pfj is None and not tail and \
            click.get_current_context().get_parameter_source("fidelity") != click.core.ParameterSource.DEFAULT:
        click.echo("warning: no PFJ file beside the weights (NAME.pfj.safetensors) and no faithful tail for the "
                   "prior: --fidelity has no effect", err=True)
    quiet = flags["quiet"]
    say = say_to_stderr(quiet)
    counts = run_jobs(
        jobs, upscaler, config, skip_existing=flags["skip_existing"], max_pixels=flags["max_pixels"] or None,
        folder_mode=folder_mode, say=say, warn=lambda line: click.echo(as_flags(line), err=True),
        progress=progress_factory(quiet or rank.distributed),  # one bar per rank would interleave
    )
    counts = gather_counts(counts, rank)
    if folder_mode and rank.is_main:
        say(summary_line(counts) + (f" ({rank.world_size} processes)" if rank.distributed else ""))
    if counts["failed"]:
        raise click.exceptions.Exit(1)
    resolved = upscaler.resolve(config)
    if upscaler.gain_kind(resolved.gain, str(resolved.policy)) == "exact" and resolved.gain == "auto" and not quiet:
        click.echo("note: no gain regressor beside the weights (NAME.regressor.safetensors), so the adaptive "
                   "policy computed the metrics themselves, which is slow; see `adadiffsr train regressor`", err=True)


def config_from_flags(flags: dict[str, Any]) -> UpscaleConfig:
    """The ``UpscaleConfig`` the flags describe (checked in its ``__post_init__``)."""
    interval, steps, policy, batch_tiles = flags["interval"], flags["steps"], flags["policy"], flags["batch_tiles"]
    if interval is not None and steps is not None:
        raise click.UsageError("give --interval or --steps, not both")
    if batch_tiles != "auto" and not (batch_tiles.isdigit() and int(batch_tiles) >= 1):
        raise click.BadParameter(f"{batch_tiles!r} is not a positive integer or 'auto'", param_hint="--batch-tiles")
    thresholds, student_groups = flags["group_thresholds"], flags["student_groups"]
    return UpscaleConfig(
        policy=policy,
        interval=interval,
        steps=steps,
        strength=flags["strength"],
        timesteps=int_list(flags["timestep_list"], "--timesteps") if flags["timestep_list"] else None,
        budget=flags["budget"],
        min_budget=flags["min_budget"] if flags["min_budget"] is not None else GroupSettings.min_budget,
        thresholds=float_list(thresholds, "--group-thresholds") if thresholds else GroupSettings.thresholds,
        student=flags["student"],
        student_groups=int_list(student_groups, "--student-groups") if student_groups else GroupSettings.student_groups,
        rule=flags["scheduler"],
        eta=flags["eta"],
        tile=flags["tile"],
        overlap=flags["overlap"],
        batch_tiles=int(batch_tiles) if batch_tiles != "auto" else 0,
        seed=flags["seed"],
        color_fix=flags["color_fix"],
        outscale=flags["scale"],
        gain=flags["gain"],
        spacing=flags["spacing"],
        intervals=int_list(flags["intervals"], "--intervals"),
        tau=flags["tau"],
        fr_change=flags["fr_change"],
        drop=flags["drop"],
        fidelity=flags["fidelity"],
        prior=flags["prior_name"],
        prior_share=flags["prior_share"],
        prior_threshold=flags["prior_threshold"],
        prior_signal=flags["prior_signal"],
    )
