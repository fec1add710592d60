"""DTSS as pure functions, the policy in the sampler, and the adaptive sampler through the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.core.policy import StepObservation
from adadiffsr.engine.sampler import SamplerSettings, sample_tiles, tile_generators
from adadiffsr.errors import ConfigError
from adadiffsr.policies.dtss import GROWING, SATURATED, STABLE, DTSSPolicy, activity, classify, pace

from .conftest import FunctionBackbone, tiny_compact

TAU = 5e-3


def test_classify_by_gain_and_half_of_the_path():
    gain = torch.tensor([[0.02, 0.0], [0.0, 0.0], [0.0, 0.02], [0.0, 0.0], [0.0, 0.002]])
    gain_sum = torch.tensor([[0, 0.0], [0, 0.0], [0, 0.1], [0, 0.05], [0, 0.1]])
    best = torch.tensor([0.0, 0.0, 0.1, 0.1, 0.1])
    late = torch.tensor([False, False, True, True, True])
    got = classify(gain, gain_sum, best, late, TAU, drop=0.02)
    # FR rising early -> growing; flat early -> stable; NR rising late -> growing;
    # NR 0.05 below its best late -> saturated; NR flat late -> stable
    assert got.tolist() == [GROWING, STABLE, GROWING, SATURATED, STABLE]


def test_any_fr_change_counts_a_falling_fr_as_information_arriving():
    # an x0-predicting backbone moves away from the input's feature as it draws detail: FR falls
    gain = torch.tensor([[-0.02, 0.0], [-0.001, 0.0], [-0.03, -0.01], [0.0, 0.02], [-0.002, 0.001]])
    gain_sum = torch.zeros(5, 2)
    best = torch.zeros(5)
    late = torch.tensor([False, False, True, True, True])
    paper = classify(gain, gain_sum, best, late, TAU, drop=0.05)
    assert paper.tolist() == [STABLE, STABLE, STABLE, GROWING, STABLE]
    got = classify(gain, gain_sum, best, late, TAU, drop=0.05, fr_change="any")
    assert got.tolist() == [GROWING, STABLE, GROWING, GROWING, STABLE]
    assert activity(gain, late, "any").tolist() == pytest.approx([0.02, 0.001, 0.03, 0.02, 0.002])
    assert pace(gain, late, got, TAU, 3, "any").tolist() == [0, 2, 0, 0, 2]
    with pytest.raises(ConfigError, match="fr_change"):
        DTSSPolicy(fr_change="sometimes")  # type: ignore[arg-type]


def test_pace_is_faster_for_stronger_growth():
    gain = torch.tensor([[0, 0.03], [0, 0.015], [0, 0.007], [0, 0.001], [0, -0.5]])
    late = torch.ones(5, dtype=torch.bool)
    category = torch.tensor([GROWING, GROWING, GROWING, STABLE, SATURATED])
    assert pace(gain, late, category, TAU, 4).tolist() == [0, 1, 2, 3, 3]


def test_thresholds_apply_to_the_gain_per_timestep():
    """The same gain over a jump of 5 is 4x the rate of one over 20: growing, where per step it is stable."""
    from adadiffsr.policies.dtss import gain_rate

    gain = torch.tensor([[0.0, 0.002], [0.0, 0.002], [0.0, 0.002]])
    t, t_next = torch.tensor([300, 300, 4]), torch.tensor([280, 295, -1])
    assert gain_rate(gain, t, t_next, 20)[:, 1].tolist() == pytest.approx([0.002, 0.008, 0.008])
    obs = StepObservation(tile=torch.arange(3), t=t, t_next=t_next, steps=torch.tensor([3, 3, 3]), gain=gain,
                          gain_sum=torch.zeros(3, 2), best_sum=torch.zeros(3), late=t < 500)
    assert DTSSPolicy(tau=TAU)(obs).category.tolist() == [STABLE, GROWING, GROWING]
    assert DTSSPolicy(tau=TAU, rate=False)(obs).category.tolist() == [STABLE, STABLE, STABLE]


def test_policy_decisions_and_validation():
    policy = DTSSPolicy()
    assert policy.initial(torch.full((3,), 999)).tolist() == [3, 3, 3]  # start at the largest interval
    obs = StepObservation(
        tile=torch.arange(2), t=torch.tensor([300, 300]), t_next=torch.tensor([280, 280]), steps=torch.tensor([9, 9]),
        gain=torch.tensor([[0.0, 0.03], [0.0, -0.01]]), gain_sum=torch.tensor([[0.0, 0.2], [0.0, 0.05]]),
        best_sum=torch.tensor([0.17, 0.2]), late=torch.tensor([True, True]),
    )
    decision = policy(obs)
    assert decision.interval_index.tolist() == [0, 3]
    assert decision.exit.tolist() == [False, True]
    assert decision.keep.tolist() == [True, False]  # a new best NR sum is kept
    with pytest.raises(ConfigError, match="gain function"):
        policy(StepObservation(obs.tile, obs.t, obs.t_next, obs.steps))
    with pytest.raises(ConfigError):
        DTSSPolicy(intervals=(10, 5))


def test_saturated_tiles_exit_with_their_best_state_and_cost_nothing_more():
    """Scripted gains: the NR performance of one tile keeps rising, of the other peaks at t = 300."""
    backbone = FunctionBackbone(lambda x, t, c: 0.5 * c + 0.1 * torch.tanh(x))
    x_T = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    cond = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    seen: dict[int, torch.Tensor] = {}

    class Scripted:
        """NR performance as a scripted function of t: the sampler turns it into gains (eq. 1)."""

        nr_start = 500.0

        def __init__(self, nr):
            self.nr = nr

        def __call__(self, x0, c, t):
            seen[int(t[0])] = x0.clone()
            return torch.tensor([[0.5, self.nr(int(t[0]))]])

    def run(nr):
        seen.clear()
        return sample_tiles(backbone, x_T, cond, DTSSPolicy(), SamplerSettings(), tile_generators(0, 1, x_T.device),
                            performance=Scripted(nr))

    def peak(t):
        return 0.5 + (1000 - t) * 5e-4 if t > 300 else 0.85 - (300 - t) * 1e-3

    rising = run(lambda t: 0.5 + (1000 - t) * 5e-4)
    peaking = run(peak)
    assert rising.exit_t[0] == -1 and peaking.exit_t[0] > 0
    assert peaking.steps[0] < rising.steps[0] and peaking.nfe == int(peaking.steps[0])
    assert peaking.category[0] == SATURATED
    best_t = max((t for t in seen if t < 500), key=peak)  # the estimate with the highest NR performance
    assert torch.equal(peaking.x0, seen[best_t])


def test_adaptive_through_the_api_reports_savings():
    image = Image.open(Path(__file__).parents[1] / "assets" / "coffee-lr.png").convert("RGB").crop((0, 0, 32, 32))
    upscaler = Upscaler(tiny_compact(), "cpu")
    result = upscaler(image, UpscaleConfig(policy="adaptive", tile=16, gain="exact"))
    report = result.report
    assert report["nfe_uniform"] == 50 * report["num_tiles"]  # uniform at the finest interval, 20
    assert report["nfe"] < report["nfe_uniform"] and report["nfe_saved"] == report["nfe_uniform"] - report["nfe"]
    assert all("category" in t for t in report["tiles"])
    assert report["seconds"]["gain"] > 0
    assert np.asarray(result.step_map()).shape[2] == 3
    with pytest.raises(ConfigError):
        upscaler(image, UpscaleConfig(policy="adaptive", intervals=(20, 5)))


def test_the_late_half_starts_where_the_nr_gain_does_at_the_steps_own_timestep():
    """The sampler counts the NR gain once the step's own t < 500; DTSS reads the same t, so a step
    from 510 to 490 is judged by its FR gain (its NR gain is still 0)."""
    gain = torch.tensor([[0.03, 0.0], [0.03, 0.0]])
    obs = StepObservation(tile=torch.arange(2), t=torch.tensor([510, 490]), t_next=torch.tensor([490, 470]),
                          steps=torch.tensor([3, 3]), gain=gain, gain_sum=torch.zeros(2, 2), best_sum=torch.zeros(2),
                          late=torch.tensor([510, 490]) < 500)
    assert DTSSPolicy(tau=TAU, intervals=(20,))(obs).category.tolist() == [GROWING, STABLE]


def test_steps_follow_content_through_the_image_pipeline():
    """DTSS over a whole image whose left half is flat and right half textured, with a gain that
    reads each tile's content (flat: the NR performance peaks, then falls; textured: it keeps rising):
    flat tiles exit early with fewer steps, textured ones walk to the end, and the report says so."""
    from adadiffsr.engine.pipeline import TilingSettings, upscale_tensor
    from adadiffsr.report import build_report

    backbone = FunctionBackbone(lambda x, t, c: 0.5 * c + 0.1 * torch.tanh(x), tile_size=8)
    lr = torch.zeros(1, 3, 8, 32)
    lr[..., 16:] = torch.rand(1, 3, 8, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1

    class ContentGain:
        nr_start = 500.0

        def __call__(self, x0, cond, t):
            texture = (cond[..., 1:] - cond[..., :-1]).abs().mean((1, 2, 3)).clamp(max=1)
            done = 1 - t.float() / 1000
            nr = torch.where(texture > 0.1, done, 0.8 * done - torch.relu(done - 0.6) * 2)
            return torch.stack([torch.full_like(nr, 0.5), nr], 1)

    policy = DTSSPolicy(intervals=(20, 50, 100), tau=0.02, drop=0.05, fr_change="any")
    out = upscale_tensor(backbone, lr, policy, SamplerSettings(), TilingSettings(tile=8, overlap=0),
                         performance=ContentGain())
    steps, exits = out.run.steps.tolist(), out.run.exit_t.tolist()
    assert len(steps) == 4, steps  # tiles at x = 0, 8 (flat), 16, 24 (textured)
    assert max(steps[:2]) < min(steps[2:])
    assert all(e >= 0 for e in exits[:2]) and exits[2:] == [-1, -1]
    report = build_report(out, policy.intervals, 1000, {})
    assert [t["category"] for t in report["tiles"][:2]] == ["saturated", "saturated"]
    assert report["nfe"] == sum(steps) < report["nfe_uniform"]
