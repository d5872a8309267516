"""Running under torchrun: one process group per command, each rank its share of the work, rank 0 the writer."""

from __future__ import annotations

import os


def is_writer() -> bool:
    """Whether this process writes (takes the workspace lock, the ledger, the files): always, except a rank other
    than 0 that torchrun started. A ``RANK`` variable left in the environment outside torchrun changes nothing."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return True
    return int(os.environ.get("RANK", "0") or 0) == 0


def rank_world() -> tuple[bool, int, int]:
    """Join the process group when torchrun started this process; → (distributed, this rank, world size). On a GPU
    machine each rank uses the GPU of its local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False, 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True, dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (no-op outside torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
