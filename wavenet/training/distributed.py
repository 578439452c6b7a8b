"""Data-parallel training across processes: who am I, which device, and the few collectives
the training loop needs.

`wavenet-train` runs unchanged under `torchrun`: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous (MASTER_ADDR/PORT), `setup` joins the process group with nccl on CUDA and gloo on
CPU, and `World` answers rank questions. Without torchrun it is a world of one and every
collective is a no-op, so the single-process path has no distributed code in the way.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place: rank in [0, size), its device (cuda:LOCAL_RANK on a GPU node) and
    local_rank, its rank among the processes of its machine."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 logs, validates, samples and writes checkpoints."""
        return self.rank == 0

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every rank (one tiny all-reduce; local when size is 1)."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def any_true(self, flag: bool) -> bool:
        """Whether `flag` holds on some rank."""
        return not self.all_true(not flag)

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.size

    def broadcast(self, obj: object) -> object:
        """Rank 0's `obj` on every rank (pickled; tensors inside arrive on this rank's device
        for nccl, on the CPU for gloo)."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, obj: object) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if self.size == 1:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def process_device(device: str = "auto") -> torch.device:
    """This process's device for train.device: cuda:LOCAL_RANK for "cuda", or for "auto" where
    CUDA is available; else the CPU. ValueError for "cuda" on a machine without CUDA."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available; use train.device=auto")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def setup(device: str = "auto") -> World:
    """Join the torchrun process group if there is one and pick this process's device.

    device: "auto" (cuda:LOCAL_RANK when CUDA is available, else cpu), "cpu" or "cuda".
    Raises ValueError for "cuda" on a machine without CUDA.
    """
    dev = process_device(device)
    use_cuda = dev.type == "cuda"
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return World(rank, size, dev, local_rank)


def teardown(world: World) -> None:
    """Leave the process group that `setup` joined (no-op for a world of one)."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
