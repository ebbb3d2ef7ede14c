"""torch.distributed glue for ``torchrun``: NCCL on GPUs, gloo on the CPU.

Under ``torchrun --nproc_per_node N`` the environment holds ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; without them everything runs as a
single process (rank 0 of 1) and the helpers here are no-ops.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world``; ``device`` is a torch device string."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_distributed(device: str = "auto") -> DistInfo:
    """Start the process group when launched by torchrun; pick this process's device.

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` (resolved by :func:`dali_pipelines.devices.resolve_device`).

    Returns:
        :class:`DistInfo`; for CUDA the device is ``cuda:<LOCAL_RANK>`` and made current.
    """
    import torch

    from dali_pipelines.devices import resolve_device

    dev = resolve_device(device)
    world = env_world()
    if world <= 1:
        return DistInfo(0, 1, 0, "cuda:0" if dev == "cuda" else "cpu")
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev == "cuda" else "gloo")
    if dev == "cpu":  # share the cores between the processes on this node
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    info = DistInfo(rank, world, local, f"cuda:{local}" if dev == "cuda" else "cpu")
    log.info("distributed: rank %d of %d on %s (%s)", rank, world, info.device, dist.get_backend())
    return info


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    for t in module.state_dict().values():
        dist.broadcast(t, src=src)


def cleanup() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
