"""BatchNorm over the whole batch of all processes on any device: PyTorch's SyncBatchNorm runs on CUDA only.

`AllReduceBatchNorm` normalises in training with the mean and variance of every rank's batch together:
per-channel sums, then sums of squared deviations from the global mean, each all-reduced over the default
process group (`torch.distributed.nn.functional.all_reduce`, through which autograd flows, so each rank's
gradient holds what its samples contribute to the other ranks' statistics). Its running statistics follow the
global batch. With one process, or in eval mode, it is plain BatchNorm. `AllReduceBatchNormSync` is the
Lightning plugin that swaps it in for every BatchNorm of the model while fitting (`trainer=ddp_cpu`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins import LayerSync
from torch import nn
from torch.distributed.nn.functional import all_reduce


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = (1, -1) + (1,) * (input.dim() - 2)
        count = torch.full((1,), input.numel() / input.shape[1], dtype=input.dtype, device=input.device)
        totals = all_reduce(torch.cat([input.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centred = input - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1), factor)
        output = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


def _swap(module: nn.Module, convert) -> nn.Module:
    replacement = convert(module)
    for name, child in module.named_children():
        replacement.add_module(name, _swap(child, convert))
    return replacement


def _copy_batchnorm(source: nn.modules.batchnorm._BatchNorm, cls: type) -> nn.Module:
    target = cls(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
    state = source.state_dict()
    target.load_state_dict(state)
    target.train(source.training)
    if source.affine:
        target.requires_grad_(source.weight.requires_grad)  # a frozen model's stay frozen
    return target.to(next(iter(state.values())).device) if state else target


class AllReduceBatchNormSync(LayerSync):
    """Swaps every BatchNorm of a model for `AllReduceBatchNorm` (and back): `Trainer(plugins=[...])`."""

    def apply(self, model: nn.Module) -> nn.Module:
        def convert(module: nn.Module) -> nn.Module:
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
                module, AllReduceBatchNorm
            ):
                converted = _copy_batchnorm(module, AllReduceBatchNorm)
                converted.original_class = type(module)
                return converted
            return module

        return _swap(model, convert)

    def revert(self, model: nn.Module) -> nn.Module:
        def convert(module: nn.Module) -> nn.Module:
            if isinstance(module, AllReduceBatchNorm):
                return _copy_batchnorm(module, getattr(module, "original_class", nn.BatchNorm2d))
            return module

        return _swap(model, convert)
