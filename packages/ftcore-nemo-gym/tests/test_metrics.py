"""The stop decision on /verify failures is taken on counts summed over training processes."""

from __future__ import annotations

import socket

import torch.distributed as dist
import torch.multiprocessing as mp

from ftcore_nemo_gym.metrics import _summed_over_processes


def _rank(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:  # rank 0's server is dead (4 failures, none answered); rank 1's answers
        results[rank] = _summed_over_processes(4 if rank == 0 else 0, 0 if rank == 0 else 4)
    finally:
        dist.destroy_process_group()


def test_counts_are_summed_over_processes_so_all_decide_alike():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(port, results), nprocs=2, join=True)
    assert dict(results) == {0: (4, 4), 1: (4, 4)}
    assert _summed_over_processes(3, 1) == (3, 1)  # one process: as they are
