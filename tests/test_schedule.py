"""The skip-step codebook against diffusers' own schedulers, and per-sample gathering."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from adadiffsr.core.schedule import NoiseSchedule, SkipCodebook, skip_step, split_prediction
from adadiffsr.engine.sampler import SamplerSettings, sample_tiles, tile_generators
from adadiffsr.errors import ConfigError
from adadiffsr.policies.uniform import UniformPolicy

from .conftest import FunctionBackbone


def model_fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a network: depends on x_t, t and the condition."""
    phase = (t.float() / 1000).view(-1, 1, 1, 1)
    return 0.6 * torch.tanh(x_t) * torch.cos(3 * phase) + 0.4 * cond * phase


def run_diffusers(scheduler, x_T, cond, generator=None):
    x = x_T.clone()
    for t in scheduler.timesteps:
        out = model_fn(x, t.view(1), cond)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("interval", [5, 20])
@pytest.mark.parametrize("rule", ["ddim", "ddpm"])
def test_uniform_run_matches_diffusers(prediction_type, interval, rule):
    steps = 1000 // interval
    kwargs = dict(
        num_train_timesteps=1000,
        beta_schedule="linear",
        prediction_type=prediction_type,
        clip_sample=prediction_type == "sample",
        timestep_spacing="trailing",
    )
    scheduler = DDIMScheduler(**kwargs) if rule == "ddim" else DDPMScheduler(**kwargs)
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps[0] == 999 and len(scheduler.timesteps) == steps

    gen = torch.Generator().manual_seed(1)
    cond = torch.rand(1, 3, 8, 8, generator=gen) * 2 - 1
    x_T = torch.randn(1, 3, 8, 8, generator=gen)
    seed = 7
    reference = run_diffusers(
        scheduler, x_T, cond, generator=torch.Generator().manual_seed(seed * 1_000_003) if rule == "ddpm" else None
    )

    backbone = FunctionBackbone(model_fn, prediction_type=prediction_type, clip_sample=prediction_type == "sample")
    run = sample_tiles(
        backbone, x_T, cond, UniformPolicy(interval), SamplerSettings(rule=rule), tile_generators(seed, 1, x_T.device)
    )
    assert run.nfe == steps
    assert torch.allclose(run.x0, reference, atol=1e-5), (run.x0 - reference).abs().max()


def test_schedules_match_diffusers_alphas():
    for name, start, end in [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012), ("squaredcos_cap_v2", 0, 0)]:
        ours = NoiseSchedule.from_betas(1000, start, end, name).alphas_cumprod
        theirs = DDPMScheduler(beta_start=start, beta_end=end, beta_schedule=name).alphas_cumprod
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=0), name


def test_gather_per_sample_equals_separate_calls():
    """One batch of tiles at different timesteps and intervals equals each tile stepped alone."""
    book = SkipCodebook.build(NoiseSchedule.from_betas(), (5, 10, 15, 20))
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(4, 3, 6, 6, generator=gen)
    out = torch.randn(4, 3, 6, 6, generator=gen)
    noise = torch.randn(4, 3, 6, 6, generator=gen)
    t = torch.tensor([999, 512, 37, 3])
    k = torch.tensor([0, 3, 2, 1])
    for rule in ("ddim", "ddpm"):
        x0, eps = split_prediction(book, out, x_t, t, "epsilon")
        batched = skip_step(book, rule, x_t, x0, eps, t, k, noise)
        for i in range(4):
            s = slice(i, i + 1)
            x0_i, eps_i = split_prediction(book, out[s], x_t[s], t[s], "epsilon")
            alone = skip_step(book, rule, x_t[s], x0_i, eps_i, t[s], k[s], noise[s])
            assert torch.equal(batched[s], alone)


def test_jump_below_zero_lands_on_clean_sample():
    book = SkipCodebook.build(NoiseSchedule.from_betas(), (20,))
    t, k = torch.tensor([7]), torch.tensor([0])
    assert book.next_timestep(t, k).item() == -1
    x_t, x0, eps = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    for rule in ("ddim", "ddpm"):
        assert torch.allclose(skip_step(book, rule, x_t, x0, eps, t, k, torch.randn(1, 3, 4, 4)), x0, atol=1e-6)


def test_codebook_rejects_bad_intervals():
    with pytest.raises(ConfigError):
        SkipCodebook.build(NoiseSchedule.from_betas(), (0, 5))
    with pytest.raises(ConfigError):
        SkipCodebook.build(NoiseSchedule.from_betas(), ())
    with pytest.raises(ConfigError):
        SkipCodebook.build(NoiseSchedule.from_betas(), (5,)).interval_index(7)


@pytest.mark.parametrize("rule", ["ddim", "ddpm"])
def test_a_batch_of_mixed_jumps_matches_diffusers_step_by_step(rule):
    """Each tile of one batch (its own t and interval k) against diffusers' scheduler stepping that
    tile alone from t to t - k: an independent reference, not our own code called twice."""
    intervals = (5, 10, 20, 50)
    book = SkipCodebook.build(NoiseSchedule.from_betas(), intervals)
    gen = torch.Generator().manual_seed(0)
    x_t, out = torch.randn(4, 3, 6, 6, generator=gen), torch.randn(4, 3, 6, 6, generator=gen)
    t, k = torch.tensor([999, 512, 37, 3]), torch.tensor([3, 1, 2, 0])
    noise = torch.stack([torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(10 + i)) for i in range(4)])
    x0, eps = split_prediction(book, out, x_t, t, "epsilon")
    ours = skip_step(book, rule, x_t, x0, eps, t, k, noise)
    for i in range(4):
        scheduler = (DDIMScheduler if rule == "ddim" else DDPMScheduler)(num_train_timesteps=1000, clip_sample=False)
        jump = intervals[int(k[i])]
        if rule == "ddim":
            scheduler.set_timesteps(1000 // jump)  # its step goes from t to t - 1000 / steps
        else:  # DDPM steps to the next of its timesteps: this one walk, or the clean sample after t
            scheduler.set_timesteps(timesteps=[int(t[i]), int(t[i]) - jump] if t[i] >= jump else [int(t[i])])
        kwargs = {} if rule == "ddim" else {"generator": torch.Generator().manual_seed(10 + i)}
        theirs = scheduler.step(out[i : i + 1], int(t[i]), x_t[i : i + 1], **kwargs).prev_sample
        assert torch.allclose(ours[i : i + 1], theirs, atol=1e-5), (i, (ours[i : i + 1] - theirs).abs().max())
