"""Speed switches of training, shared by the stage modules, `dawn-train` and `dawn-bench train`: compiling a
stage's network and activation checkpointing. (Mixed precision is Lightning's: ``trainer.precision``.)"""

from __future__ import annotations

import functools

import lightning as L
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)


def compile_network(module: L.LightningModule, setting: bool | dict | None) -> None:
    """``torch.compile`` the stage's network ``module.net`` in place (its parameter names, and so the
    checkpoints, stay as they are): ``setting`` true, or `torch.compile` options ({mode: max-autotune}).

    Shapes are static unless the options say ``dynamic``: once a second clip length (or the validation batch)
    arrived, inductor's dynamic-shape tracing of stage 3's U-Net failed (torch 2.14, CPU: "cannot determine
    truth value of Relational"); static shapes compile once per shape instead."""
    if setting:
        module.net.compile(**({"dynamic": False} | ({} if setting is True else dict(setting))))


def checkpoint_activations(net: nn.Module, block_types: tuple[type[nn.Module], ...]) -> int:
    """Recomputes the activations of every ``block_types`` block of ``net`` in the backward pass instead of
    keeping them (non-reentrant `torch.utils.checkpoint`): memory for long clips, at about one more forward
    pass. Parameter names are unchanged. Returns the number of blocks wrapped."""
    blocks = [m for m in net.modules() if isinstance(m, block_types)]
    wrapper = functools.partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    apply_activation_checkpointing(
        net, checkpoint_wrapper_fn=wrapper, check_fn=lambda m: isinstance(m, block_types)
    )
    return len(blocks)
