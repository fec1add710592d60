"""The sampling loop: per-tile pace, early exit without further cost, batching, mixed timesteps."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.core.policy import Decision, StepObservation
from adadiffsr.engine.sampler import SamplerSettings, sample_tiles, tile_generators, uniform_nfe
from adadiffsr.policies.uniform import UniformPolicy

from .conftest import FunctionBackbone, tiny_compact


def smooth_fn(x_t, t, cond):
    return 0.5 * torch.tanh(x_t) + 0.5 * cond


@dataclass(frozen=True)
class StopOddTiles:
    """Toy policy: odd tiles exit after ``stop_after`` steps keeping their best (first) state;
    tile 2 walks with interval 5 while the rest use 20."""

    stop_after: int = 3
    intervals: tuple[int, ...] = (5, 20)

    def initial(self, t):
        k = torch.ones_like(t, dtype=torch.long)
        k[2] = 0
        return k

    def __call__(self, obs: StepObservation) -> Decision:
        odd = obs.tile % 2 == 1
        return Decision(
            interval_index=torch.where(obs.tile == 2, 0, 1),
            exit=odd & (obs.steps >= self.stop_after),
            keep=obs.steps == 1,
        )


def inputs(n=6, size=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.rand(n, 3, size, size, generator=gen) * 2 - 1


def timed_fn(x_t, t, cond):
    """Depends on each tile's own timestep and condition, so a tile routed to the wrong row of a
    batch, or handed another tile's t, changes the result (smooth_fn ignores t)."""
    return 0.5 * torch.tanh(x_t) + 0.5 * cond * torch.cos(t.float() / 300).view(-1, 1, 1, 1)


def test_uniform_every_tile_takes_the_same_steps():
    backbone = FunctionBackbone(smooth_fn)
    x_T, cond = inputs()
    run = sample_tiles(backbone, x_T, cond, UniformPolicy(20), SamplerSettings(batch_tiles=4), tile_generators(0, 6, x_T.device))
    assert run.steps.tolist() == [50] * 6
    assert run.nfe == uniform_nfe(6, 20) == 300
    assert sum(b for b, _ in backbone.calls) == 300
    assert max(b for b, _ in backbone.calls) == 4  # batches of --batch-tiles


def test_early_exit_costs_no_more_backbone_calls():
    backbone = FunctionBackbone(smooth_fn)
    x_T, cond = inputs()
    run = sample_tiles(backbone, x_T, cond, StopOddTiles(), SamplerSettings(batch_tiles=8), tile_generators(0, 6, x_T.device))
    assert run.steps.tolist() == [50, 3, 200, 3, 50, 3]
    assert run.nfe == 50 + 200 + 50 + 3 * 3
    assert sum(b for b, _ in backbone.calls) == run.nfe  # exited tiles were never evaluated again
    assert run.exit_t.tolist()[1] == 999 - 3 * 20
    assert run.exit_t[0].item() == -1
    # the exited tiles hold their kept (first-step) x0, here smooth_fn's output at t=999
    first_x0 = smooth_fn(x_T[1:2], None, cond[1:2])
    assert torch.allclose(run.x0[1:2], first_x0, atol=1e-6)


def test_batches_mix_timesteps():
    backbone = FunctionBackbone(smooth_fn)
    x_T, cond = inputs()
    sample_tiles(backbone, x_T, cond, StopOddTiles(), SamplerSettings(batch_tiles=8), tile_generators(0, 6, x_T.device))
    assert any(len(set(ts)) > 1 for _, ts in backbone.calls)


def test_result_does_not_depend_on_batch_size():
    """Mixed timesteps and intervals in one batch (tile 2 walks at 5, the rest at 20, odd ones exit),
    stochastic DDPM: batches of 1, 4 and 6 give the same tiles, for a function of each tile's own t
    and condition and for a real (tiny) conv network."""
    x_T, cond = inputs()
    compact = tiny_compact(tile_size=16)
    with torch.no_grad():
        latents = torch.randn(6, compact.spec.latent_channels, 4, 4, generator=torch.Generator().manual_seed(5))
        cases = ((FunctionBackbone(timed_fn), x_T, cond), (compact, latents, compact.condition(cond)))
        for backbone, states, conditions in cases:
            results = [sample_tiles(backbone, states, conditions, StopOddTiles(),
                                    SamplerSettings(rule="ddpm", batch_tiles=batch), tile_generators(3, 6, x_T.device)).x0
                       for batch in (1, 4, 6)]
            assert torch.allclose(results[0], results[1], atol=1e-5)
            assert torch.allclose(results[0], results[2], atol=1e-5)
            assert not torch.allclose(results[0][0], results[0][2], atol=1e-3)  # tiles differ: a swap would show


def test_progress_reaches_one():
    seen = []
    x_T, cond = inputs(n=2)
    sample_tiles(
        FunctionBackbone(smooth_fn), x_T, cond, UniformPolicy(100), SamplerSettings(), tile_generators(0, 2, x_T.device),
        progress=lambda done, nfe: seen.append((done, nfe)),
    )
    assert seen[-1] == (1.0, 20)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_even_walk_takes_exactly_the_steps_asked_for():
    from adadiffsr.policies.timesteps import even_walk

    for first in (999, 399, 49):
        for n in range(1, 51):
            if n > first + 1:
                continue
            walk = even_walk(first, n)
            assert len(walk) == n and walk[0] == first and walk[-1] >= 0
            assert all(a > b for a, b in zip(walk, walk[1:]))
    assert even_walk(999, 50) == tuple(range(999, -1, -20))  # the interval-20 walk where 50 divides 1000
    assert even_walk(999, 3) == (999, 666, 332)


def test_steps_n_runs_n_steps_for_every_n_through_the_api():
    """--steps N once ran N + 1 steps at some N (interval round(1000 / 3) = 333) and N - 1 at others
    (interval ceil(1000 / 45) = 23 takes 44 steps); the report says what ran."""
    from PIL import Image

    upscaler = Upscaler(tiny_compact(), "cpu")
    image = Image.new("RGB", (16, 16), (90, 140, 200))
    for n in range(1, 51):
        result = upscaler(image, UpscaleConfig(steps=n))
        assert result.report["nfe"] == n, n  # one tile
        assert result.report["nfe_uniform"] == n
        assert len(result.report["settings"]["timesteps"]) == n
        assert result.report["tiles"][0]["steps"] == n


def test_the_callback_sees_every_step_and_the_policy_the_gain_functions_late_half():
    """k-diffusion's callback: one call per batch step with the estimates; and the observation's
    ``late`` is the gain function's own ``t < nr_start``, so DTSS and the gain agree by construction."""
    backbone = FunctionBackbone(smooth_fn)
    x_T, cond = inputs(n=3)

    class Performance:
        nr_start = 430.0

        def __call__(self, x0, c, t):
            return torch.stack([x0.mean((1, 2, 3)), x0.std((1, 2, 3))], 1)

    lates: list[tuple[list[int], list[bool]]] = []

    @dataclass(frozen=True)
    class Watch:
        intervals: tuple[int, ...] = (100,)

        def initial(self, t):
            return torch.zeros_like(t, dtype=torch.long)

        def __call__(self, obs: StepObservation) -> Decision:
            lates.append((obs.t.tolist(), obs.late.tolist()))
            return UniformPolicy(100)(obs)

    seen: list[dict[str, torch.Tensor]] = []
    run = sample_tiles(backbone, x_T, cond, Watch(), SamplerSettings(batch_tiles=2), tile_generators(0, 3, x_T.device),
                       performance=Performance(), callback=seen.append)
    assert len(seen) == 2 * 10  # 10 steps, two batches (2 + 1 tiles) each
    assert sum(len(s["tile"]) for s in seen) == run.nfe == 30
    assert all(set(s) == {"tile", "t", "t_next", "x", "denoised", "cond", "gain"} for s in seen)
    assert torch.equal(seen[-1]["x"], run.x0[seen[-1]["tile"]])  # the last states are the results
    for ts, late in lates:
        assert late == [t < 430 for t in ts]
    assert any(any(late) for _, late in lates) and not all(all(late) for _, late in lates)


def test_the_loop_sees_one_model_the_denoiser_routes_tiles_to_the_student():
    """``Denoiser`` (k-diffusion's external wrappers): the loop calls one model; tiles routed to the
    student get the student's prediction and count as its evaluations, the rest the backbone's; a run
    routed to a student that is not there fails in one line."""
    import pytest

    from adadiffsr.engine.denoiser import Denoiser
    from adadiffsr.errors import ConfigError

    backbone, student = FunctionBackbone(timed_fn), FunctionBackbone(lambda x, t, c: 0 * x + 0.25)
    x_T, cond = inputs()
    routed = torch.tensor([True, False, True, False, False, False])
    settings = SamplerSettings(batch_tiles=4)
    alone = sample_tiles(backbone, x_T, cond, UniformPolicy(250), settings, tile_generators(0, 6, x_T.device))
    mixed = sample_tiles(Denoiser(backbone, student, routed), x_T, cond, UniformPolicy(250), settings,
                         tile_generators(0, 6, x_T.device))
    assert torch.equal(mixed.x0[~routed], alone.x0[~routed])  # the backbone's tiles as without a student
    assert not torch.allclose(mixed.x0[routed], alone.x0[routed])
    assert alone.nfe == 6 * 4 and mixed.nfe_student == 2 and mixed.nfe == 4 * 4 + 2  # the student: one step to the end
    with pytest.raises(ConfigError, match="no student was given"):
        Denoiser(backbone, None, routed)


def test_the_denoiser_gives_each_student_tile_the_student_of_its_estimate():
    """With a compact prior's student beside the student, the student's tiles whose estimate is the compact
    prior's take it, the others the student; the backbone's tiles are untouched; both count as student NFE."""
    from adadiffsr.engine.denoiser import BACKBONE, COMPACT_STUDENT, STUDENT, Denoiser

    backbone = FunctionBackbone(timed_fn)
    student, compact = (FunctionBackbone(lambda x, t, c, v=v: 0 * x + v) for v in (0.25, -0.25))
    x_T, cond = inputs()
    routed = torch.tensor([True, False, True, True, False, False])
    on_compact = torch.tensor([False, False, True, True, True, False])
    denoiser = Denoiser(backbone, student, routed, compact, on_compact)
    assert denoiser.networks(6, x_T.device).tolist() == [STUDENT, BACKBONE, COMPACT_STUDENT, COMPACT_STUDENT,
                                                         BACKBONE, BACKBONE]
    settings = SamplerSettings(batch_tiles=4)
    one = sample_tiles(Denoiser(backbone, student, routed), x_T, cond, UniformPolicy(250), settings,
                       tile_generators(0, 6, x_T.device))
    two = sample_tiles(denoiser, x_T, cond, UniformPolicy(250), settings, tile_generators(0, 6, x_T.device))
    assert torch.equal(two.x0[~routed], one.x0[~routed]) and torch.equal(two.x0[0], one.x0[0])
    assert torch.allclose(two.x0[2:4], torch.full_like(two.x0[2:4], -0.25))
    assert torch.allclose(one.x0[2:4], torch.full_like(one.x0[2:4], 0.25))
    assert two.nfe_student == one.nfe_student == 3
