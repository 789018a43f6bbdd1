"""The elastic SyncBatchNorm: two processes with half a batch each compute what one process does with all of it."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from search_spaces.elastic import ElasticBatchNorm2d, ElasticConv2d, sync_batch_norms


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(ElasticConv2d(3, 8, 3, padding=1, bias=False), ElasticBatchNorm2d(8), nn.ReLU(),
                          ElasticConv2d(8, 4, 1, bias=False), ElasticBatchNorm2d(4))
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    model[0].set_active(out=6)  # a sub-network: 6 of 8 channels (a prefix) ...
    model[1].set_active(6)
    model[3].set_active(in_=6)
    model[4].set_active(torch.tensor([0, 2, 3]))  # ... and gathered channels
    model[3].set_active(out=torch.tensor([0, 2, 3]))
    return model.train()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(6, 3, 5, 7) * 3 + 1, torch.randn(6, 3, 5, 7)


def _step(model, x, target):
    loss = F.mse_loss(model(x), target)
    loss.backward()
    return model(x).detach()


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model = _model()
    assert sync_batch_norms(model) == 2
    x, target = _batch()
    half = slice(3 * rank, 3 * rank + 3)
    output = _step(model, x[half], target[half])
    grads = [p.grad.clone() for p in model.parameters()]
    for g in grads:  # DDP averages the workers' gradients
        dist.all_reduce(g)
        g /= 2
    results[rank] = (output, grads, model[4].running_mean.clone(), model[4].running_var.clone())
    norm = ElasticBatchNorm2d(3, momentum=None).train()  # a bf16 activation, as under autocast, far from 0
    norm.sync = True
    output = norm((x[half] + 50).to(torch.bfloat16))
    results[f"bf16 {rank}"] = (output.dtype, norm.running_mean.clone(), norm.running_var.clone())
    dist.destroy_process_group()


def test_two_synced_halves_equal_one_whole_batch():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(port, results), nprocs=2)
    model = _model()  # one process, the whole batch: plain batch norm
    x, target = _batch()
    whole = _step(model, x, target)
    for rank in (0, 1):
        output, grads, mean, var = results[rank]
        # normalised with the statistics of the whole batch, the running statistics updated with them
        assert torch.allclose(output, whole[3 * rank:3 * rank + 3], atol=1e-4)
        for got, expected in zip(grads, (p.grad for p in model.parameters())):
            assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
        assert torch.allclose(mean, model[4].running_mean, atol=1e-5)
        assert torch.allclose(var, model[4].running_var, atol=1e-5)
    # bf16 inputs: statistics summed in fp32, so the variance survives a mean of 50 (bf16 sums would lose it)
    shifted = (x + 50).to(torch.bfloat16).double()
    for rank in (0, 1):
        dtype, mean, var = results[f"bf16 {rank}"]
        assert dtype == torch.bfloat16
        assert torch.allclose(mean.double(), shifted.mean(dim=(0, 2, 3)), atol=1e-3)
        assert torch.allclose(var.double(), shifted.var(dim=(0, 2, 3)), rtol=1e-3)
    # and not what a half alone gives: the check can fail
    alone = _model()
    assert not torch.allclose(_step(alone, x[:3], target[:3]), whole[:3], atol=1e-3)
