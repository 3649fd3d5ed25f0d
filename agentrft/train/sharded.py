"""Parameters and optimizer state as the ranks hold them, and as rank 0 hands them out whole.

Under FSDP2 every trained tensor is a DTensor cut along its first dimension, `torch.chunk`
style: with N ranks and d rows, rank r holds rows [r·c, min((r+1)·c, d)), c = ceil(d / N)
(the last ranks may hold fewer rows, or none). Under DDP a tensor is a plain, full replica.

    to_rank0(t)   rank r pads its rows to c ──► dist.gather ──► rank 0: concat, cut to d rows
                  (rank 0 alone receives, and so alone ever holds the whole tensor; the
                  others send their rows and get None. A DDP replica: rank 0's own copy.)

This is how new weights reach the sampling engine after a step (`RankTrainer.weights`):

    ranks ── to_rank0, one parameter at a time ──► rank 0: {name: full CPU tensor}
          ── its process connection (or Ray) ────► host Policy's model ── engine.sync_weights

so the whole model (or adapter) is materialised on rank 0 and the host, never on the other
ranks; a `full_tensor()` all-gather would have put each whole parameter on every rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _dtensor():
    from torch.distributed.tensor import DTensor

    return DTensor


def local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, _dtensor()) else t


def shard_like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A full tensor cut the way `param` is (every rank holds the same full value, so no
    communication is needed); unchanged for a plain parameter."""
    if not isinstance(param, _dtensor()):
        return value.to(param.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                             src_data_rank=None)


def _rows_sharded(t) -> bool:
    from torch.distributed.tensor import Shard

    return (t.device_mesh.ndim == 1 and len(t.placements) == 1
            and isinstance(t.placements[0], Shard) and t.placements[0].dim == 0 and t.dim() > 0)


@torch.no_grad()
def to_rank0(t: torch.Tensor) -> torch.Tensor | None:
    """The whole of `t` on rank 0 (on `t`'s device), None on the other ranks. A collective for
    a DTensor: every rank calls it, in the same order."""
    rank = dist.get_rank()
    if not isinstance(t, _dtensor()):
        return t if rank == 0 else None  # a replica: every rank holds the same values
    if not _rows_sharded(t):  # not a layout FSDP2 makes; the general, all-gathering way
        whole = t.full_tensor()
        return whole if rank == 0 else None
    mine = t.to_local()
    n, rows = t.device_mesh.size(), t.shape[0]
    chunk = -(-rows // n)
    padded = mine.new_zeros((chunk, *t.shape[1:]))
    padded[:len(mine)] = mine
    group = t.device_mesh.get_group()
    if rank != 0:
        dist.gather(padded, None, dst=0, group=group)
        return None
    pieces = [torch.empty_like(padded) for _ in range(n)]
    dist.gather(padded, pieces, dst=0, group=group)
    return torch.cat(pieces)[:rows]
