"""DTSS along the grouped walk: the decisions as a function, the sampler with scripted gains measured
from each tile's starting estimate, and the policy through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from adadiffsr.core.policy import StepObservation
from adadiffsr.engine.sampler import SamplerSettings, sample_tiles, tile_generators
from adadiffsr.errors import ConfigError
from adadiffsr.policies.dtss import GROWING, SATURATED, STABLE
from adadiffsr.policies.walk_dtss import WalkDTSSPolicy

from .conftest import FunctionBackbone

WALK = (399, 149, 29)


def test_the_interval_set_holds_the_walk_and_every_jump_to_the_clean_sample():
    policy = WalkDTSSPolicy(WALK)
    assert policy.intervals == (30, 120, 150, 250, 400)
    starts = torch.tensor([999, 399, 149, 29])
    assert [policy.intervals[i] for i in policy.initial(starts).tolist()] == [250, 250, 120, 30]
    with pytest.raises(ConfigError):
        WalkDTSSPolicy((149, 399))


def test_growing_takes_the_walk_stable_jumps_to_clean_saturated_exits():
    policy = WalkDTSSPolicy(WALK, tau=0.02, drop=0.05)
    n = 4
    obs = StepObservation(
        tile=torch.arange(n), t=torch.tensor([399, 399, 399, 149]), t_next=torch.tensor([149, 149, 149, 29]),
        steps=torch.ones(n, dtype=torch.long),
        gain=torch.tensor([[0.0, 0.1], [0.0, 0.001], [0.0, -0.2], [0.0, 0.1]]),
        gain_sum=torch.tensor([[0.0, 0.1], [0.0, 0.001], [0.0, -0.2], [0.0, 0.1]]),
        best_sum=torch.zeros(n), late=torch.ones(n, dtype=torch.bool),
    )
    d = policy(obs)
    assert d.category.tolist() == [GROWING, STABLE, SATURATED, GROWING]
    assert [policy.intervals[i] for i in d.interval_index.tolist()] == [120, 150, 150, 30]  # walk, to clean, -, walk
    assert d.exit.tolist() == [False, False, True, False]
    assert d.keep.tolist() == [True, True, False, True]  # a step that fell below the estimate is not kept


class Estimating(FunctionBackbone):
    """Starts every tile from its condition (the refiner starts from the prior's estimate)."""

    def estimate(self, cond: Tensor) -> Tensor:
        return cond


class Scripted:
    """The k-th performance of a tile (k = 0: its starting estimate), picked by the tile's condition value."""

    nr_start = 500.0

    def __init__(self, scripts: dict[int, list[float]]) -> None:
        self.scripts, self.calls = scripts, {key: 0 for key in scripts}

    def __call__(self, x0: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        rows = []
        for c in cond:
            key = round(float(c.mean()) * 10)
            rows.append([0.5, self.scripts[key][self.calls[key]]])
            self.calls[key] += 1
        return torch.tensor(rows)


def test_the_first_gain_is_against_the_starting_estimate_which_an_early_exit_returns():
    backbone = Estimating(lambda x, t, c: 0.5 * c + 0.1 * torch.tanh(x))
    cond = torch.stack([torch.full((3, 4, 4), v) for v in (0.1, 0.2, 0.3)])
    x_T = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    scripts = {1: [0.5, 0.6, 0.7, 0.8],  # NR keeps rising: growing, the whole walk
               2: [0.5, 0.5, 0.5, 0.5],  # nothing changes: stable, straight to the clean sample
               3: [0.5, 0.3, 0.3, 0.3]}  # the first step made it worse: saturated, the estimate back
    run = sample_tiles(backbone, x_T, cond, WalkDTSSPolicy(WALK), SamplerSettings(first_gain="estimate"),
                       tile_generators(0, 3, x_T.device), performance=Scripted(scripts), start=torch.full((3,), 399))
    assert run.steps.tolist() == [3, 2, 1] and run.nfe == 6
    assert [t for _, t in backbone.calls[1:]] == [(149, 149), (29,)]  # the stable tile's second step from 149
    assert run.exit_t.tolist() == [-1, -1, 149] and run.category[2] == SATURATED
    assert torch.equal(run.x0[2], cond[2])  # the starting estimate, exactly
    # with the paper's zero first gain, every tile looks stable after its first step
    zero = sample_tiles(backbone, x_T, cond, WalkDTSSPolicy(WALK), SamplerSettings(),
                        tile_generators(0, 3, x_T.device), performance=Scripted({k: v[1:] + [0.0] for k, v in scripts.items()}),
                        start=torch.full((3,), 399))
    assert zero.steps.tolist() == [2, 2, 2]
    with pytest.raises(ConfigError, match="first gain"):
        sample_tiles(backbone, x_T, cond, WalkDTSSPolicy(WALK), SamplerSettings(first_gain="later"),
                     tile_generators(0, 3, x_T.device), performance=Scripted(scripts), start=torch.full((3,), 399))


@pytest.mark.usefixtures("tiny_prior")
def test_grouped_dtss_through_the_cli_runs_a_gain_and_spends_no_more_than_the_groups(tmp_path, capsys):
    from adadiffsr.backbones import save_backbone
    from adadiffsr.cli import main

    from .conftest import tiny_refiner

    weights = tmp_path / "refiner.safetensors"
    save_backbone(tiny_refiner(live=True), weights)
    g = torch.Generator().manual_seed(0)
    image = torch.full((3, 64, 128), 0.5)
    image[:, :, 64:] = torch.rand(3, 64, 64, generator=g)
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "in.png")
    reports = {}
    for policy in ("grouped", "grouped-dtss"):
        args = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / f"{policy}.png"), "--weights", str(weights),
                "--tile", "32", "--overlap", "0", "--timesteps", ",".join(map(str, WALK)), "--policy", policy,
                "--group-thresholds", "0.001,0.002,0.003", "--report", str(tmp_path / f"{policy}.json"), "-q"]
        assert main(args) == 0, capsys.readouterr().err
        reports[policy] = json.loads((tmp_path / f"{policy}.json").read_text())
    grouped, adaptive = reports["grouped"], reports["grouped-dtss"]
    assert adaptive["settings"]["policy"] == "grouped-dtss" and adaptive["settings"]["gain"] == "exact"  # no regressor
    assert grouped["settings"]["gain"] == "none"
    assert adaptive["seconds"]["gain"] > 0
    for ours, theirs in zip(adaptive["tiles"], grouped["tiles"], strict=True):
        assert ours["steps"] <= theirs["steps"]  # DTSS only shortens a group's walk
        assert (ours["steps"] == 0) == (theirs["steps"] == 0)  # the groups decide who starts
    assert adaptive["nfe_uniform"] == grouped["nfe_uniform"] == 24  # 8 tiles through the 3-step walk
