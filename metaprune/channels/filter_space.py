"""The filter space of a ResNet: its prunable channel groups.

Convolutions that write into the same residual sum must keep the same output channels,
or the network cannot be made physically smaller. The unit of pruning is therefore a
*channel group* (see ``DESIGN.md`` section 2):

* every block-internal convolution (``conv1`` of a BasicBlock; ``conv1`` and ``conv2`` of a
  Bottleneck) is a group of its own, named after the convolution;
* each residual stream is one group, named after the stage that writes it (``layer1`` ...):
  the stem convolution (when stage 1 has no downsample), every block's last convolution and
  the downsample convolution that write into it;
* when stage 1 opens with a downsample (Bottleneck ResNets), the stem output is a group of
  its own, ``conv1``.

The final linear layer is never pruned; its input features follow the last stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["ChannelGroup", "FilterSpace", "head_name"]

STAGES = ("layer1", "layer2", "layer3", "layer4")
HEAD = "fc"  # torchvision's name of the final linear layer: the task head


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable set of coupled channels.

    Attributes
    ----------
    name : str
        Group name (``"layer3"``, ``"layer2.1.conv1"``, ``"conv1"``).
    size : int
        Number of channels in the pre-trained network.
    kind : {"stream", "inner", "stem"}
        Residual stream, block-internal convolution, or stand-alone stem output.
    activations : tuple of (str, bool)
        Modules whose output carries the group's activations, with a flag telling whether
        a ReLU must still be applied to it. A channel's score averages over these.
    """

    name: str
    size: int
    kind: str
    activations: tuple = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "kind": self.kind,
                "activations": [list(a) for a in self.activations]}

    @classmethod
    def from_dict(cls, d: dict) -> "ChannelGroup":
        return cls(d["name"], int(d["size"]), d["kind"], tuple((str(m), bool(r)) for m, r in d["activations"]))


@dataclass
class _GroupBuilder:
    name: str
    size: int
    kind: str
    activations: list = field(default_factory=list)


class FilterSpace:
    """Ordered prunable channel groups of a network and which tensor axes they index.

    Build one with :meth:`from_model`. ``module_axes`` maps every module whose tensors
    depend on a group to ``(output_group, input_group)`` (either may be None): for a
    convolution the groups of its output and input channels, for a BatchNorm
    ``(group, None)``, for the final linear layer ``(None, last_stream)``.

    Examples
    --------
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> space = FilterSpace.from_model(cifar_resnet18(width=16))
    >>> len(space), space.sizes["layer4"]
    (12, 128)
    """

    def __init__(self, groups, module_axes: dict):
        self.groups = tuple(groups)
        self.module_axes = dict(module_axes)
        self._by_name = {g.name: g for g in self.groups}
        if len(self._by_name) != len(self.groups):
            raise ValueError("group names must be unique")
        for module, axes in self.module_axes.items():
            for g in axes:
                if g is not None and g not in self._by_name:
                    raise ValueError(f"module {module!r} refers to unknown group {g!r}")

    # -- mapping-like access -------------------------------------------------
    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[ChannelGroup]:
        return iter(self.groups)

    def __getitem__(self, name: str) -> ChannelGroup:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown channel group {name!r}; known groups: {list(self._by_name)}") from None

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def __eq__(self, other) -> bool:
        return isinstance(other, FilterSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{g.name}={g.size}" for g in self.groups)
        return f"FilterSpace({inner})"

    @property
    def names(self) -> tuple:
        """Group names, input to output."""
        return tuple(g.name for g in self.groups)

    @property
    def sizes(self) -> dict:
        """Pre-trained number of channels of every group."""
        return {g.name: g.size for g in self.groups}

    def n_keep(self, pruning_ratio: float) -> dict:
        """Channels each group keeps at ``pruning_ratio``: ``max(1, round((1 - r) * n))``."""
        if not 0.0 <= pruning_ratio < 1.0:
            raise ValueError(f"pruning_ratio must be in [0, 1), got {pruning_ratio}")
        return {g.name: max(1, int(round((1.0 - pruning_ratio) * g.size))) for g in self.groups}

    def tensor_axes(self, state_key: str) -> tuple:
        """Group indexed by each axis of a state-dict entry (None where no group).

        Conv weights are ``(out, in, None, None)``, BatchNorm vectors ``(group,)``,
        the linear weight ``(None, in)``; entries of modules outside the space, and
        scalar buffers, give ``()`` (not indexed by any group).
        """
        module, _, attr = state_key.rpartition(".")
        axes = self.module_axes.get(module)
        if axes is None or attr == "num_batches_tracked":
            return ()
        out_group, in_group = axes
        if attr == "weight" and in_group is not None and out_group is not None:
            return (out_group, in_group)
        if attr == "weight" and in_group is not None:  # linear layer: (classes, features)
            return (None, in_group)
        return (out_group,)

    # -- serialisation --------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable description (groups and module axes)."""
        return {"groups": [g.to_dict() for g in self.groups],
                "module_axes": {k: list(v) for k, v in self.module_axes.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "FilterSpace":
        """Inverse of :meth:`to_dict`."""
        return cls([ChannelGroup.from_dict(g) for g in d["groups"]],
                   {k: tuple(v) for k, v in d["module_axes"].items()})

    # -- discovery --------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module) -> "FilterSpace":
        """Discover the channel groups of a torchvision-style ResNet.

        Works on any :class:`torchvision.models.ResNet` instance (BasicBlock or
        Bottleneck, any widths, any stem), including pruned ones: sizes are read from
        the modules, so a pruned network gives its current (smaller) sizes.

        Raises
        ------
        TypeError
            If the network does not have the ResNet layout.
        """
        for attr in ("conv1", "bn1", *STAGES):
            if not hasattr(model, attr):
                raise TypeError(f"expected a torchvision-style ResNet; {type(model).__name__} has no {attr!r}")
        builders: list[_GroupBuilder] = []
        axes: dict = {}

        def new_group(name, size, kind):
            g = _GroupBuilder(name, size, kind)
            builders.append(g)
            return g

        stem = new_group("conv1", model.conv1.out_channels, "stem")
        stem.activations.append(("bn1", True))
        axes["conv1"], axes["bn1"] = (stem, None), (stem, None)
        current = stem
        for stage in STAGES:
            for b, block in enumerate(getattr(model, stage)):
                prefix = f"{stage}.{b}"
                convs = _block_convs(block, prefix)
                previous = current
                for conv_name, bn_name in convs[:-1]:  # block-internal groups
                    conv = model.get_submodule(conv_name)
                    inner = new_group(conv_name, conv.out_channels, "inner")
                    inner.activations.append((bn_name, True))
                    axes[conv_name], axes[bn_name] = (inner, previous), (inner, None)
                    previous = inner
                last_conv, last_bn = convs[-1]
                if block.downsample is not None:
                    stream = new_group(stage if b == 0 else prefix, model.get_submodule(last_conv).out_channels, "stream")
                    axes[f"{prefix}.downsample.0"] = (stream, current)
                    axes[f"{prefix}.downsample.1"] = (stream, None)
                else:
                    stream = current
                    if stream.kind == "stem":  # the stem output is stage 1's residual stream
                        stream.name, stream.kind = stage, "stream"
                if model.get_submodule(last_conv).out_channels != stream.size:
                    raise TypeError(f"{last_conv} writes {model.get_submodule(last_conv).out_channels} channels "
                                    f"into a residual stream of {stream.size}")
                axes[last_conv], axes[last_bn] = (stream, previous), (stream, None)
                stream.activations.append((prefix, False))
                current = stream
        if isinstance(getattr(model, HEAD, None), nn.Linear):
            axes[HEAD] = (None, current)
        groups = [ChannelGroup(g.name, g.size, g.kind, tuple(g.activations)) for g in builders]
        named_axes = {m: tuple(None if g is None else g.name for g in pair) for m, pair in axes.items()}
        return cls(groups, named_axes)


def _block_convs(block: nn.Module, prefix: str) -> list:
    """(conv, bn) module names of a residual block, input to output."""
    if isinstance(block, Bottleneck):
        n = 3
    elif isinstance(block, BasicBlock):
        n = 2
    else:
        raise TypeError(f"unsupported residual block {type(block).__name__} at {prefix}")
    return [(f"{prefix}.conv{i}", f"{prefix}.bn{i}") for i in range(1, n + 1)]


def head_name(space_or_model) -> str:
    """Name of the task head: the module whose outputs are classes, not a channel group.

    Parameters
    ----------
    space_or_model : FilterSpace or torch.nn.Module
        A filter space (the head is its one module without an output group) or a
        torchvision-style ResNet, full or pruned (the head is its final linear layer).

    Returns
    -------
    str
        The module name (``"fc"``); its tensors are the state-dict entries that start with
        ``head_name(...) + "."``.

    Raises
    ------
    ValueError
        If there is no task head.

    Examples
    --------
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> model = cifar_resnet18(width=4)
    >>> head_name(model), head_name(FilterSpace.from_model(model))
    ('fc', 'fc')
    """
    if isinstance(space_or_model, FilterSpace):
        heads = [m for m, (out_group, _) in space_or_model.module_axes.items() if out_group is None]
    else:
        heads = [HEAD] if isinstance(getattr(space_or_model, HEAD, None), nn.Linear) else []
    if len(heads) != 1:
        raise ValueError(f"expected one task head (a final nn.Linear {HEAD!r}) in the "
                         f"{type(space_or_model).__name__}, found {heads or 'none'}")
    return heads[0]
