"""Many processes over one folder, started by the launchers people already use.

``torchrun --nproc-per-node N -m adadiffsr upscale IN/ -o OUT/`` and ``accelerate launch
--num_processes N -m adadiffsr upscale IN/ -o OUT/`` both set ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` (and the rendezvous address) for every process. Each rank takes file ``i`` when
``i mod WORLD_SIZE == RANK``, so a rerun gives every rank the same files and ``--skip-existing``
makes an interrupted run resumable; each rank loads the model once, on its own device
(``cuda:LOCAL_RANK`` where there are GPUs); at the end the ranks gather their counts over
``torch.distributed`` (gloo), and rank 0 prints the one merged summary. Every rank exits with the
same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_rank(environ: dict[str, str] | None = None) -> Rank:
    """This process's place, from the launcher's environment (one process when none is set)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError as e:
        raise RuntimeError(f"bad launcher environment (RANK / WORLD_SIZE / LOCAL_RANK): {e}") from e
    if world < 1 or not 0 <= rank < world:
        raise RuntimeError(f"bad launcher environment: RANK={rank} with WORLD_SIZE={world}")
    return Rank(rank, world, local, max(1, local_world))


def shard(items: list[T], rank: Rank) -> list[T]:
    """Item ``i`` to rank ``i mod world_size``: the same split on every rerun."""
    return items[rank.rank :: rank.world_size]


def rank_device(requested: str, rank: Rank) -> str:
    """``auto`` / ``cuda`` become ``cuda:LOCAL_RANK`` when this rank is one of several and sees GPUs."""
    if not rank.distributed or requested not in ("auto", "cuda"):
        return requested
    import torch

    if torch.cuda.is_available():
        return f"cuda:{rank.local_rank % torch.cuda.device_count()}"
    return requested


def share_cpu(rank: Rank) -> None:
    """Split the CPU threads between the ranks of this machine, so they do not oversubscribe it."""
    if not rank.distributed:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // rank.local_world_size))


def gather_counts(counts: dict[str, int], rank: Rank) -> dict[str, int]:
    """Every rank's counts summed, on every rank (gloo over the launcher's rendezvous)."""
    if not rank.distributed:
        return dict(counts)
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world_size)
    try:
        parts: list[dict[str, int] | None] = [None] * rank.world_size
        dist.all_gather_object(parts, counts)
    finally:
        if created:
            dist.destroy_process_group()
    total: dict[str, int] = {}
    for part in parts:
        for key, value in (part or {}).items():
            total[key] = total.get(key, 0) + value
    return total
