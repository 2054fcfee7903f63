"""Distributed training: the process group torchrun starts (WORLD_SIZE > 1), or one process.

Started by `torchrun --nproc-per-node N -m edgecnn train ...`, each process joins the group (gloo
on CPU, nccl on GPU) and trains on its shard of every epoch; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch


@dataclass
class DistributedContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks in place (a no-op in a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def distributed_context() -> DistributedContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    context = DistributedContext(world_size, rank, local_rank, device)
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            context.initialised_here = True
    return context


def wrap_model(model: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """The model as trained: wrapped in DistributedDataParallel when there are several processes."""
    if not context.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
