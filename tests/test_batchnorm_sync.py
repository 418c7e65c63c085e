"""AllReduceBatchNorm: 2 CPU processes (gloo), each with half the batch, compute the outputs, running
statistics and (DDP-averaged) gradients of one process with the whole batch and plain BatchNorm."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dawn_lightning.training.batchnorm_sync import AllReduceBatchNorm, AllReduceBatchNormSync


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))


def batch() -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 3 + 1


def objective(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Uses the BatchNorm twice per step, as stage 1 does with its region predictor."""
    return net(x).pow(2).mean() + net(x.flip(-1) * 0.5).abs().mean()


def rank_step(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    net = DistributedDataParallel(AllReduceBatchNormSync().apply(network()))
    loss = objective(net, batch()[rank::world])
    loss.backward()
    norm = net.module[1]
    # numpy arrays travel by value: a tensor would travel as a shared-memory handle that the parent cannot
    # open once this process has exited (ConnectionResetError)
    queue.put(
        (
            rank,
            float(loss),
            [p.grad.numpy().copy() for p in net.parameters()],
            (norm.running_mean.numpy().copy(), norm.running_var.numpy().copy()),
            type(norm).__name__,
        )
    )
    dist.destroy_process_group()


def test_two_ranks_compute_one_process_with_the_whole_batch():
    net = network()
    x = batch()
    loss = objective(net, torch.cat([x[0::2], x[1::2]]))  # the ranks' samples together (order is irrelevant)
    loss.backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    workers = [context.Process(target=rank_step, args=(r, 2, port, queue)) for r in range(2)]
    for worker in workers:
        worker.start()
    results = sorted(queue.get() for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert [r[4] for r in results] == ["AllReduceBatchNorm"] * 2
    assert abs((results[0][1] + results[1][1]) / 2 - float(loss)) < 1e-6
    for i, grad in enumerate(p.grad for p in net.parameters()):
        for rank in results:  # the conv bias before the BatchNorm has a gradient of ~0: compare absolutely
            torch.testing.assert_close(torch.from_numpy(rank[2][i]), grad, rtol=1e-4, atol=1e-6)
    for rank in results:  # running statistics of the whole batch (both calls), on every rank
        torch.testing.assert_close(torch.from_numpy(rank[3][0]), net[1].running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(rank[3][1]), net[1].running_var, rtol=1e-5, atol=1e-6)


def test_plugin_swaps_batchnorms_and_back_keeping_their_state():
    net = network()
    net[1].running_mean.fill_(0.5)
    synced = AllReduceBatchNormSync().apply(net)
    assert isinstance(synced[1], AllReduceBatchNorm) and torch.equal(
        synced[1].running_mean, torch.full((4,), 0.5)
    )
    x = batch()
    synced.train()
    torch.testing.assert_close(synced(x), network()(x))  # one process: plain BatchNorm
    back = AllReduceBatchNormSync().revert(synced)
    assert type(back[1]) is nn.BatchNorm2d and torch.equal(back[1].weight, synced[1].weight)
