"""Data-parallel training helpers: process-group set-up from ``torchrun``, seeds, reductions.

Under ``torchrun --nproc_per_node N`` the environment carries RANK, LOCAL_RANK and WORLD_SIZE; we
use NCCL when CUDA is available and gloo otherwise. Without those variables everything degrades to
a single process and these helpers are no-ops.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes
    ----------
    rank, local_rank, world_size : int
    backend : str or None
        "nccl", "gloo", or None for a single process.
    owns_group : bool
        True when :func:`init_distributed` created the process group (and should destroy it).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 does logging and checkpointing."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the ``torchrun`` process group described by the environment, if any.

    Parameters
    ----------
    device : str, optional
        "cpu" forces gloo even when CUDA is present.

    Returns
    -------
    DistInfo
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank, local, world, dist.get_backend(), owns)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.barrier()  # no rank tears down its connections while another still uses them
        dist.destroy_process_group()


def default_device(info: DistInfo, requested: str | None = None) -> torch.device:
    """The requested device, else this rank's GPU, else the CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:  # "cuda" under torchrun: this rank's GPU
            return torch.device("cuda", info.local_rank)
        return device
    return torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed that is a pure function of one recorded seed and any keys (rank, step, ...)."""
    text = ":".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` when distributed, else ``module`` itself."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (in place; returned for convenience)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op on a single process)."""
    if info.enabled:
        dist.barrier()
