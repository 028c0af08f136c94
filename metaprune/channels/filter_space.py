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
import numpy as np
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["ChannelGroup", "FilterSpace", "head_name", "input_channels"]

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
    activations : tuple of tuple
        Where the group's activations are read; a channel's score averages over these
        points. Each is ``(module, activation)`` or ``(module, activation, dim, segment)``:
        the module's output, with ``activation`` still to apply to it (True: ReLU, False:
        nothing, or a name such as ``"relu6"``, ``"silu"``, ``"abs"``), its channels on ``dim``
        (default 1) and, where that output is a concatenation of groups, ``segment =
        (axis, i)``: the group is the ``i``-th part of that axis.
    unit : int, default=1
        Channels are kept in whole blocks of ``unit`` (the group width of a grouped
        convolution that reads and writes the group).
    """

    name: str
    size: int
    kind: str
    activations: tuple = ()
    unit: int = 1

    def to_dict(self) -> dict:
        out = {"name": self.name, "size": self.size, "kind": self.kind,
               "activations": [_point_to_json(a) for a in self.activations]}
        if self.unit != 1:
            out["unit"] = self.unit
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "ChannelGroup":
        return cls(d["name"], int(d["size"]), d["kind"], tuple(_point_from_json(a) for a in d["activations"]),
                   int(d.get("unit", 1)))


def _axis_to_json(axis):
    return axis if axis is None or isinstance(axis, str) else [[g, int(r)] for g, r in axis]


def _axis_from_json(axis):
    return axis if axis is None or isinstance(axis, str) else tuple((str(g), int(r)) for g, r in axis)


def _point_to_json(point) -> list:
    if len(point) == 2:
        return list(point)
    module, act, dim, segment = point
    return [module, act, dim, None if segment is None else [_axis_to_json(segment[0]), segment[1]]]


def _point_from_json(point) -> tuple:
    if len(point) == 2:
        module, act = point
        return (str(module), act if isinstance(act, (bool, str)) else bool(act))
    module, act, dim, segment = point
    return (str(module), act, int(dim), None if segment is None else (_axis_from_json(segment[0]), int(segment[1])))


@dataclass
class _GroupBuilder:
    name: str
    size: int
    kind: str
    activations: list = field(default_factory=list)


class FilterSpace:
    """Ordered prunable channel groups of a network and which tensor axes they index.

    Build one with :meth:`from_model`. For a ResNet (found by a walk over its layout)
    ``module_axes`` maps every module whose tensors depend on a group to
    ``(output_group, input_group)`` (either may be None): for a convolution the groups of
    its output and input channels, for a BatchNorm ``(group, None)``, for the final linear
    layer ``(None, last_stream)``. For any other network (found by tracing, see
    :func:`metaprune.channels.tracing.trace_filter_space`) ``state_axes`` gives the axes of
    every state-dict entry directly.

    An *axis* is None (no group), a group name, or, for an axis made of several groups (a
    DenseNet concatenation) or of repeated channels (``(C, H, W)`` flattened into a Linear
    layer), a tuple of ``(group, repeat)`` segments in order.

    Examples
    --------
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> space = FilterSpace.from_model(cifar_resnet18(width=16))
    >>> len(space), space.sizes["layer4"]
    (12, 128)
    """

    def __init__(self, groups, module_axes: dict | None = None, *, state_axes: dict | None = None,
                 head: str | None = None, mixers: dict | None = None, normalisers: dict | None = None):
        self.groups = tuple(groups)
        self.module_axes = dict(module_axes or {})
        self.state_axes = None if state_axes is None else {k: tuple(v) for k, v in state_axes.items()}
        self._by_name = {g.name: g for g in self.groups}
        if len(self._by_name) != len(self.groups):
            raise ValueError("group names must be unique")
        if head is None:
            heads = [m for m, (out_group, _) in self.module_axes.items() if out_group is None]
            head = heads[0] if len(heads) == 1 else None
        self.head = head
        if mixers is None:  # a ResNet: every dense convolution and the head read a group
            mixers = {m: pair[1] for m, pair in self.module_axes.items() if pair[1] is not None}
        self.mixers = dict(mixers)
        self.normalisers = dict(normalisers or {})
        for module, axes in self.module_axes.items():
            for g in axes:
                if g is not None and g not in self._by_name:
                    raise ValueError(f"module {module!r} refers to unknown group {g!r}")
        for key, axes in (self.state_axes or {}).items():
            for axis in axes:
                for g, _ in self.segments(axis):
                    if g not in self._by_name:
                        raise ValueError(f"{key!r} refers to unknown group {g!r}")

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

    @property
    def units(self) -> dict:
        """Block size in which every group keeps its channels (1 for most groups)."""
        return {g.name: g.unit for g in self.groups}

    def n_keep(self, pruning_ratio: float) -> dict:
        """Channels each group keeps at ``pruning_ratio``: ``max(1, round((1 - r) * n))``.

        A group kept in blocks (``unit > 1``) keeps ``max(1, round((1 - r) * n / unit))``
        whole blocks.
        """
        if not 0.0 <= pruning_ratio < 1.0:
            raise ValueError(f"pruning_ratio must be in [0, 1), got {pruning_ratio}")
        return {g.name: g.unit * max(1, int(round((1.0 - pruning_ratio) * g.size / g.unit))) for g in self.groups}

    def tensor_axes(self, state_key: str) -> tuple:
        """Axis of each leading dimension of a state-dict entry (None where no group).

        Conv weights are ``(out, in)``, BatchNorm vectors ``(group,)``, the linear weight
        ``(None, in)``; a depthwise convolution's weight is ``(group, None)``. Entries of
        modules outside the space, and scalar buffers, give ``()`` (not indexed by any
        group). An axis is a group name or a tuple of ``(group, repeat)`` segments.
        """
        if self.state_axes is not None:
            return self.state_axes.get(state_key, ())
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

    # -- axes ---------------------------------------------------------------------------------
    @staticmethod
    def segments(axis) -> tuple:
        """``(group, repeat)`` segments of an axis (empty for None)."""
        if axis is None:
            return ()
        return ((axis, 1),) if isinstance(axis, str) else tuple(axis)

    def axis_size(self, axis, n_kept: dict | None = None) -> int:
        """Length of an axis in the pre-trained network, or with ``n_kept`` channels per group."""
        sizes = self.sizes if n_kept is None else n_kept
        return int(sum(sizes[g] * r for g, r in self.segments(axis)))

    def axis_positions(self, axis, selection) -> np.ndarray:
        """Positions along ``axis`` (pre-trained numbering) of the channels ``selection`` keeps."""
        if isinstance(axis, str):
            return np.asarray(selection[axis])
        parts, offset = [], 0
        for g, r in self.segments(axis):
            kept = np.asarray(selection[g], dtype=np.int64)
            parts.append(offset + (kept[:, None] * r + np.arange(r)).ravel())
            offset += self[g].size * r
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def axis_positions_in(self, axis, selection, current) -> np.ndarray:
        """Positions of ``selection``'s channels along ``axis`` of a network holding ``current``."""
        outer = self.axis_positions(axis, current)
        return np.searchsorted(outer, self.axis_positions(axis, selection))

    # -- serialisation --------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable description (groups and module or state axes)."""
        out = {"groups": [g.to_dict() for g in self.groups],
               "module_axes": {k: list(v) for k, v in self.module_axes.items()}}
        if self.state_axes is not None:
            out["state_axes"] = {k: [_axis_to_json(a) for a in v] for k, v in self.state_axes.items()}
            out["head"] = self.head
            out["mixers"] = {k: _axis_to_json(a) for k, a in self.mixers.items()}
            out["normalisers"] = {k: _axis_to_json(a) for k, a in self.normalisers.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "FilterSpace":
        """Inverse of :meth:`to_dict`."""
        groups = [ChannelGroup.from_dict(g) for g in d["groups"]]
        module_axes = {k: tuple(v) for k, v in d["module_axes"].items()}
        if "state_axes" not in d:
            return cls(groups, module_axes)
        return cls(groups, module_axes,
                   state_axes={k: tuple(_axis_from_json(a) for a in v) for k, v in d["state_axes"].items()},
                   head=d["head"], mixers={k: _axis_from_json(a) for k, a in d["mixers"].items()},
                   normalisers={k: _axis_from_json(a) for k, a in d["normalisers"].items()})

    # -- discovery --------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module, input_shape=None) -> "FilterSpace":
        """Discover the channel groups of a network.

        A torchvision-style ResNet (:class:`torchvision.models.ResNet`, BasicBlock or
        Bottleneck, any widths, any stem) is read off its layout, with the group names
        above (``"layer1"`` ...). Any other network is traced
        (:func:`metaprune.channels.tracing.trace_filter_space`): its groups are named after
        the first module that writes them. Sizes are read from the modules, so a pruned
        ResNet gives its current (smaller) sizes.

        Parameters
        ----------
        model : torch.nn.Module
        input_shape : tuple of int, optional
            ``(C, H, W)`` for tracing (see :func:`~metaprune.channels.tracing.trace_filter_space`).

        Raises
        ------
        TypeError
            If the network can be neither read as a ResNet nor traced; the message names
            the module and the reason.
        """
        if not _has_resnet_layout(model):
            from .tracing import trace_filter_space  # noqa: PLC0415 (tracing imports this module)

            return trace_filter_space(model, input_shape)[0]
        return cls._from_resnet(model)

    @classmethod
    def _from_resnet(cls, model: nn.Module) -> "FilterSpace":
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
        heads = [space_or_model.head] if space_or_model.head is not None else []
    elif not _has_resnet_layout(space_or_model):
        heads = [_last_linear(space_or_model)]
    else:
        heads = [HEAD] if isinstance(getattr(space_or_model, HEAD, None), nn.Linear) else []
    if len(heads) != 1:
        raise ValueError(f"expected one task head (a final nn.Linear {HEAD!r}) in the "
                         f"{type(space_or_model).__name__}, found {heads or 'none'}")
    return heads[0]


def _last_linear(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` registered in a (non-ResNet) network: its task head."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"expected a final nn.Linear task head in the {type(model).__name__}, found none")
    return names[-1]


def _has_resnet_layout(model: nn.Module) -> bool:
    """Whether ``model`` is laid out as a torchvision ResNet (stem, four stages of blocks)."""
    return all(hasattr(model, attr) for attr in ("conv1", "bn1", *STAGES)) and all(
        isinstance(block, (BasicBlock, Bottleneck)) for stage in STAGES for block in getattr(model, stage))


def input_channels(model: nn.Module) -> int:
    """Channels of the images a network reads: its first convolution's input channels."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"{type(model).__name__} has no nn.Conv2d: not a convolutional network")
    return first.in_channels
