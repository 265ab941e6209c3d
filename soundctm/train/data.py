"""Resumable, rank-sharded batch streams: the batch at micro-step k is a pure function of (seed, k).

Two kinds of ``data`` are accepted by the trainer:

- a map-style dataset (``__len__`` + ``__getitem__``): a global batch of ``batch_size`` indices is drawn from a
  per-epoch permutation (seeded by ``seed`` and the epoch); process ``rank`` of ``world_size`` takes the
  ``rank``-th contiguous slice of it. The permutation stream runs across epoch boundaries, so no sample is dropped.
- a callable ``data(start_micro_step, rank, world_size) -> Iterator[batch]`` for procedurally generated data; it
  must yield, from ``start_micro_step`` on, the same batches a run from 0 would have yielded there.

Items should be deterministic per index (random augmentation belongs in the loss, drawn from its ``rng``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

BatchStream = Callable[[int, int, int], Iterator[Any]]


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(num_items)`` fixed by (seed, epoch) — [num_items] int64."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=g)


def shard_slice(global_batch: int, rank: int, world_size: int) -> slice:
    """Positions of process ``rank`` inside one global batch (contiguous, equal sizes)."""
    if global_batch % world_size:
        raise ValueError(f"batch_size={global_batch} must be divisible by the number of processes {world_size}")
    per_rank = global_batch // world_size
    return slice(rank * per_rank, (rank + 1) * per_rank)


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless index batches for one rank, starting at micro-step ``start`` of the global stream."""

    def __init__(self, num_items: int, batch_size: int, seed: int, start: int = 0, rank: int = 0,
                 world_size: int = 1):
        if num_items < 1:
            raise ValueError(f"dataset is empty (num_items={num_items}); need at least one item")
        self.num_items, self.batch_size, self.seed, self.start = num_items, batch_size, seed, start
        self.shard = shard_slice(batch_size, rank, world_size)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def global_batch(self, micro_step: int) -> list[int]:
        """All ``batch_size`` dataset indices of global micro-step ``micro_step`` (stream positions
        ``[k·B, (k+1)·B)``; position p is item ``perm_{p // N}[p % N]``)."""
        position, end = micro_step * self.batch_size, (micro_step + 1) * self.batch_size
        pieces = []
        while position < end:
            epoch, offset = divmod(position, self.num_items)
            take = min(end - position, self.num_items - offset)
            pieces.append(self._permutation(epoch)[offset:offset + take])
            position += take
        return torch.cat(pieces).tolist()

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(self.num_items, self.seed, epoch)
        return self._perm

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while True:
            yield self.global_batch(step)[self.shard]
            step += 1


def is_map_dataset(data: Any) -> bool:
    """True for objects with ``__len__`` and ``__getitem__`` (torch map-style datasets, lists)."""
    return hasattr(data, "__len__") and hasattr(data, "__getitem__")


def batch_stream(data: Any, batch_size: int, seed: int, start: int, rank: int, world_size: int,
                 num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False) -> Iterator[Any]:
    """The endless batch iterator of this rank from micro-step ``start`` (see module docstring)."""
    if is_map_dataset(data):
        sampler = ResumableBatchSampler(len(data), batch_size, seed, start, rank, world_size)
        loader = DataLoader(data, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                            pin_memory=pin_memory, persistent_workers=num_workers > 0,
                            generator=torch.Generator().manual_seed(seed))
        return iter(loader)
    if callable(data):
        shard_slice(batch_size, rank, world_size)  # same divisibility rule as datasets
        return iter(data(start, rank, world_size))
    raise ValueError(f"data must be a map-style dataset or a callable (start, rank, world_size) -> iterator, "
                     f"got {type(data).__name__}")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
