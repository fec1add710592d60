"""A narrower copy of a compact refiner's UNet, warm started by structured pruning (AdcSR's "prunable
parts pruned").

Every level keeps its first ``c_student`` channels of the teacher's ``c_teacher``: each tensor of the
student is the teacher's tensor sliced to the student's shape along every dimension that shrank. Where
diffusers' up blocks concatenate the upsampled stream with a skip connection (``UpBlock2D``: the stream
first, then the skip), the slice keeps the first channels of *each* part, so the student's skip
channels are the teacher's skip channels rather than the stream's tail. With ``norm_num_groups``
halved along with the channels, every kept GroupNorm group is one of the teacher's groups, whole.

The student still has to be trained (the dropped channels fed every kept one), so the output layer
starts at zero: the pruned student returns the prior's estimate until distillation teaches it more.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _concat_splits(block_out_channels: tuple[int, ...], layers_per_block: int) -> dict[str, tuple[int, int]]:
    """``up_blocks.I.resnets.J`` -> (stream channels, skip channels) of its input, as diffusers'
    ``UNet2DModel`` builds its ``UpBlock2D``s."""
    splits: dict[str, tuple[int, int]] = {}
    reversed_channels = list(reversed(block_out_channels))
    out = reversed_channels[0]
    for i in range(len(block_out_channels)):
        prev, out = out, reversed_channels[i]
        skip_in = reversed_channels[min(i + 1, len(block_out_channels) - 1)]
        for j in range(layers_per_block + 1):
            splits[f"up_blocks.{i}.resnets.{j}"] = (prev if j == 0 else out, skip_in if j == layers_per_block else out)
    return splits


def _slice(tensor: Tensor, shape: torch.Size, concat_dim: int | None, teacher_split: tuple[int, int] | None,
           student_split: tuple[int, int] | None) -> Tensor:
    for dim, size in enumerate(shape):
        if tensor.shape[dim] == size:
            continue
        if dim == concat_dim and teacher_split is not None and student_split is not None:
            keep = list(range(student_split[0])) + [teacher_split[0] + k for k in range(student_split[1])]
            tensor = tensor.index_select(dim, torch.tensor(keep))
        else:
            tensor = tensor.narrow(dim, 0, size)
    return tensor


@torch.no_grad()
def prune_into(student: nn.Module, teacher: nn.Module, student_channels: tuple[int, ...],
               teacher_channels: tuple[int, ...], layers_per_block: int) -> None:
    """Copy ``teacher``'s UNet weights into the narrower ``student`` (same layout), as described above."""
    t_splits = _concat_splits(teacher_channels, layers_per_block)
    s_splits = _concat_splits(student_channels, layers_per_block)
    teacher_state = teacher.state_dict()
    state = {}
    concat_dims = {"conv1": 1, "conv_shortcut": 1, "norm1": 0}  # where a resnet reads the concatenated input
    for name, value in student.state_dict().items():
        parts = name.split(".")
        block = ".".join(parts[:4])
        concat_dim = concat_dims.get(parts[4]) if block in t_splits else None
        state[name] = _slice(teacher_state[name], value.shape, concat_dim, t_splits.get(block),
                             s_splits.get(block)).clone()
    student.load_state_dict(state)
