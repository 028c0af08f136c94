"""Size and cost of a (pruned) network: parameters and FLOPs."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_flops"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


@torch.no_grad()
def count_flops(model: nn.Module, input_shape) -> int:
    """FLOPs of one forward pass on a single input of shape ``input_shape`` = (C, H, W).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add is 2
    FLOPs; convolutions and matrix products, which dominate a ResNet). The pass runs on
    the ``meta`` device, so it allocates nothing, whatever the image size.
    """
    shapes_only = {name: torch.empty_like(tensor, device="meta")
                   for name, tensor in (*model.named_parameters(), *model.named_buffers())}
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            torch.func.functional_call(model, shapes_only, (torch.zeros((1, *input_shape), device="meta"),))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
