"""Channel groups of any convolutional network, found by tracing its graph with ``torch.fx``.

:func:`trace_filter_space` follows every tensor's channel axis through the traced graph and
unites the channels that must be pruned together:

* a dense convolution or a hidden ``nn.Linear`` writes a new set of channels;
* channel-wise layers (BatchNorm, LayerNorm over channels, activations, pooling, dropout,
  stochastic depth) pass their input's channels through;
* a depthwise convolution passes its channels through (its input and output channels are
  one group); a grouped convolution does too, and its group must keep whole blocks of
  ``in_channels / groups`` channels (``ChannelGroup.unit``);
* additions and products of two tensors (residual sums, squeeze-and-excitation scaling,
  ConvNeXt's layer scale) unite their channels;
* a concatenation along the channels (DenseNet) gives an axis made of several groups, and
  flattening ``(C, H, W)`` into a Linear layer (VGG) an axis whose channels repeat ``H * W``
  times;
* the final ``nn.Linear`` whose output is the network's output is the task head: its
  inputs are a group axis, its outputs are classes.

Anything the analysis does not understand (a ``view``, an unknown leaf module, a
channel-multiplier convolution, data-dependent control flow) raises a :class:`TypeError`
naming the module or the graph node and the reason: a network is never pruned wrongly.

Why ``torch.fx`` and not Torch-Pruning's DependencyGraph: the analysis must end in channel
groups *named in the pre-trained numbering* with, for every state-dict entry, the group of
each axis, so that selections, votes, the bank and weight averaging keep working across
tasks; fx gives the graph with module names and call order, which is all that needs, with
no extra dependency, while the DependencyGraph answers a different question (which layers
to cut for one index set of one layer) and its pruning happens in place on one model.
"""

from __future__ import annotations

import math
import operator
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["trace_filter_space", "TracedChannels"]

# modules and functions that leave the channel axis as it is
_PASSING_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Sigmoid,
                    nn.Hardsigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Identity, nn.Dropout,
                    nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.SiLU: "silu",
                       nn.GELU: "gelu", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.Mish: "mish"}
_ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hardswish",
                         F.silu: "silu", F.gelu: "gelu", F.leaky_relu: "leaky_relu", F.elu: "elu",
                         F.mish: "mish"}
_PASSING_FUNCTIONS = {*_ACTIVATION_FUNCTIONS, torch.sigmoid, F.sigmoid, F.hardsigmoid, torch.tanh,
                      F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d, F.dropout,
                      torch.clone, F.relu_}
_PASSING_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "contiguous", "clone", "tanh", "detach"}
_ADD = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div}

INPUT = 0  # the variable of the image channels: never pruned


@dataclass
class _Flow:
    """The channel axis of one tensor: its dimension and the variables along it, in order.

    ``segments`` is a tuple of ``(variable, repeat)``: variable ``v`` covers
    ``size(v) * repeat`` consecutive entries, channel ``c`` at ``c * repeat ... + repeat - 1``.
    """

    dim: int
    ndim: int
    segments: tuple


@dataclass
class TracedChannels:
    """What :func:`trace_filter_space` found, besides the filter space itself.

    Attributes
    ----------
    head : str
        Module name of the task head.
    trace_seconds : float
        Wall time of tracing and the analysis.
    graph : torch.fx.Graph
        The traced graph (its node names are those used in error messages).
    """

    head: str
    trace_seconds: float
    graph: fx.Graph = field(repr=False)


class _Analysis:
    def __init__(self, model: nn.Module, graph: fx.Graph):
        self.model = model
        self.graph = graph
        self.modules = dict(model.named_modules())
        self.parent = [INPUT]
        self.size = [None]
        self.unit = [1]
        self.producer = [None]  # module that first writes the variable
        self.flows: dict = {}
        self.state_axes: dict = {}  # state key -> tuple of per-axis segment tuples (or None)
        self.mixers: dict = {}  # module -> axis of the input it mixes (masked in the masked forward)
        self.normalisers: dict = {}  # module -> (channel dim of its input, axis): LayerNorm over channels
        self.calls: dict = {}
        self.points: list = []  # (module, activation, dim, axis segments)
        self.head = None
        self.gates = set()  # modules whose output only gates other channels (squeeze-and-excitation)
        for node in graph.nodes:
            if node.op == "call_module":
                self.calls[node.target] = self.calls.get(node.target, 0) + 1

    # -- union-find over channel variables ---------------------------------------------------
    def new_var(self, size: int, producer: str) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.unit.append(1)
        self.producer.append(producer)
        return len(self.parent) - 1

    def find(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: int, b: int, where: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] is not None and self.size[rb] is not None and self.size[ra] != self.size[rb]:
            raise TypeError(f"{where}: couples {self.size[ra]} channels with {self.size[rb]}")
        if rb == INPUT or (ra != INPUT and rb < ra):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.unit[ra] = math.lcm(self.unit[ra], self.unit[rb])

    def unite_flows(self, a: _Flow, b: _Flow, where: str) -> None:
        if a.segments == b.segments:
            return
        if len(a.segments) != len(b.segments) or any(ra != rb for (_, ra), (_, rb) in zip(a.segments, b.segments)):
            raise TypeError(f"{where}: combines two channel axes made of different concatenations; "
                            "channel pruning cannot couple them")
        for (va, _), (vb, _) in zip(a.segments, b.segments):
            self.union(va, vb, where)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def shape(node) -> tuple:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()

    def flow(self, arg, node) -> _Flow:
        flow = self.flows.get(arg) if isinstance(arg, fx.Node) else None
        if flow is None:
            raise TypeError(f"graph node {node.name!r} ({node.format_node()}): its input carries no "
                            "channels the analysis follows")
        return flow

    def record(self, key: str, axes: tuple) -> None:
        old = self.state_axes.get(key)
        if old is not None and old != axes:
            raise TypeError(f"{key} is used with two different channel layouts ({old} and {axes})")
        self.state_axes[key] = axes

    def tensor_of(self, arg):
        """The parameter or buffer behind a ``get_attr`` node, with its state key."""
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            return arg.target, self.model.get_parameter(arg.target) if arg.target in dict(
                self.model.named_parameters()) else self.model.get_buffer(arg.target)
        return None, None

    # -- the walk -----------------------------------------------------------------------------
    def run(self):
        for node in self.graph.nodes:
            if node.op == "placeholder":
                shape = self.shape(node)
                if len(shape) != 4:
                    raise TypeError(f"the network's input {node.name!r} is not an image batch (N, C, H, W)")
                self.size[INPUT] = shape[1]
                self.flows[node] = _Flow(1, 4, ((INPUT, 1),))
            elif node.op == "call_module":
                self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.call_function(node)
            elif node.op == "output":
                self.output(node)
        return self

    def call_module(self, node) -> None:
        module = self.modules[node.target]
        name = node.target
        if isinstance(module, nn.Conv2d):
            self.conv(node, module)
        elif isinstance(module, nn.Linear):
            self.linear(node, module)
        elif isinstance(module, nn.LayerNorm):
            flow = self.flow(node.args[0], node)
            self.layer_norm(node, flow, tuple(module.normalized_shape), name, owner=name)
            self.flows[node] = flow
        elif isinstance(module, nn.Flatten):
            self.flatten(node, self.flow(node.args[0], node), module.start_dim, module.end_dim)
        elif isinstance(module, (nn.Dropout, nn.Identity)) and node.args[0] in self.flows \
                and self.flows[node.args[0]] is None:
            self.flows[node] = None  # after the head: class scores
        elif isinstance(module, _PASSING_MODULES):
            flow = self.flow(node.args[0], node)
            if isinstance(module, nn.BatchNorm2d):
                if flow.dim != 1:
                    raise TypeError(f"BatchNorm {name!r} normalises dim 1, but the channels are on dim {flow.dim}")
                axis = (flow.segments,)
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(module, attr, None) is not None:
                        self.record(f"{name}.{attr}", axis)
            self.flows[node] = _Flow(flow.dim, len(self.shape(node)) or flow.ndim, flow.segments)
            act = _ACTIVATION_MODULES.get(type(module))
            if act is not None:
                self.activation_point(node, act, flow)
        else:
            raise TypeError(f"module {name!r} ({type(module).__name__}): channel pruning does not know "
                            "how this layer uses its channels")

    def conv(self, node, conv: nn.Conv2d) -> None:
        name = node.target
        flow = self.flow(node.args[0], node)
        if flow.dim != 1 or flow.ndim != 4:
            raise TypeError(f"convolution {name!r} reads channels on dim {flow.dim} of a {flow.ndim}-d tensor")
        if any(rep != 1 for _, rep in flow.segments):
            raise TypeError(f"convolution {name!r} reads a flattened axis")
        if conv.groups == 1:
            out = self.new_var(conv.out_channels, name)
            if node.users and all(self.is_gate(user) for user in node.users):
                self.gates.add(name)
            segments = ((out, 1),)
            self.record(f"{name}.weight", (segments, flow.segments))
            self.mixers[name] = flow.segments
        else:
            if conv.out_channels != conv.in_channels:
                raise TypeError(f"convolution {name!r} has groups={conv.groups} and {conv.in_channels} -> "
                                f"{conv.out_channels} channels: channel pruning supports grouped convolutions "
                                "whose input and output widths are equal (depthwise or grouped, not channel "
                                "multipliers)")
            segments = flow.segments  # channel c (or block b) of the output reads only channel c (block b)
            width = conv.in_channels // conv.groups
            if width > 1:
                if len(segments) != 1:
                    raise TypeError(f"grouped convolution {name!r} reads a concatenation of channel groups")
                root = self.find(segments[0][0])
                self.unit[root] = math.lcm(self.unit[root], width)
            self.record(f"{name}.weight", (segments, None))
        if conv.bias is not None:
            self.record(f"{name}.bias", (segments,))
        self.flows[node] = _Flow(1, 4, segments)

    def linear(self, node, linear: nn.Linear) -> None:
        name = node.target
        flow = self.flow(node.args[0], node)
        if flow.dim != flow.ndim - 1:
            raise TypeError(f"Linear {name!r} reads its features on the last dim, but the channels are on "
                            f"dim {flow.dim} of {flow.ndim}")
        if self.feeds_output(node):
            if self.head is not None:
                raise TypeError(f"two Linear layers ({self.head!r}, {name!r}) write the network's output")
            self.head = name
            self.record(f"{name}.weight", (None, flow.segments))
            self.mixers[name] = flow.segments
            self.flows[node] = None
            return
        out = self.new_var(linear.out_features, name)
        self.record(f"{name}.weight", (((out, 1),), flow.segments))
        if linear.bias is not None:
            self.record(f"{name}.bias", (((out, 1),),))
        self.mixers[name] = flow.segments
        self.flows[node] = _Flow(flow.ndim - 1, flow.ndim, ((out, 1),))

    def is_gate(self, node) -> bool:
        """Whether ``node`` is a sigmoid-like gate (its output scales other channels)."""
        if node.op == "call_module":
            return isinstance(self.modules[node.target], (nn.Sigmoid, nn.Hardsigmoid))
        return node.target in (torch.sigmoid, F.sigmoid, F.hardsigmoid) or (
            node.op == "call_method" and node.target == "sigmoid")

    def feeds_output(self, node) -> bool:
        """Whether ``node``'s value reaches the graph output through pass-through steps only."""
        frontier = [node]
        while frontier:
            n = frontier.pop()
            for user in n.users:
                if user.op == "output":
                    return True
                if user.op == "call_module" and isinstance(self.modules[user.target], (nn.Dropout, nn.Identity)):
                    frontier.append(user)
        return False

    def layer_norm(self, node, flow: _Flow, normalized_shape: tuple, weight_owner: str | None, owner: str,
                   weight=None, bias=None) -> None:
        if flow.dim != flow.ndim - 1 or len(normalized_shape) != 1:
            raise TypeError(f"LayerNorm {owner!r} normalises over {normalized_shape}, not over the channels alone")
        axis = (flow.segments,)
        if weight_owner is not None:
            for attr in ("weight", "bias"):
                if getattr(self.modules[weight_owner], attr, None) is not None:
                    self.record(f"{weight_owner}.{attr}", axis)
        for key in (weight, bias):
            if key is not None:
                self.record(key, axis)
        self.normalisers[owner] = flow.segments

    def activation_point(self, node, act: str, flow: _Flow) -> None:
        """Remember where a group's activations can be read: a module output, once per forward."""
        source = node.args[0]
        if node.op == "call_module" and self.calls[node.target] == 1:
            self.points.append((node.target, "identity", flow.dim, flow.segments))
        elif isinstance(source, fx.Node) and source.op == "call_module" and self.calls[source.target] == 1:
            self.points.append((source.target, act, flow.dim, flow.segments))

    def flatten(self, node, flow: _Flow, start: int, end: int) -> None:
        shape_in = self.shape(node.args[0])
        ndim = len(shape_in)
        start, end = start % ndim, end % ndim
        if not start <= flow.dim <= end:
            self.flows[node] = _Flow(flow.dim if flow.dim < start else flow.dim - (end - start), ndim - (end - start),
                                     flow.segments)
            return
        if flow.dim != start:
            raise TypeError(f"graph node {node.name!r} flattens dims {start}..{end} with the channels not first")
        repeat = math.prod(shape_in[start + 1:end + 1])
        self.flows[node] = _Flow(start, ndim - (end - start), tuple((v, r * repeat) for v, r in flow.segments))

    def call_function(self, node) -> None:
        target = node.target
        args = node.args
        name = getattr(target, "__name__", str(target))
        if (target is getattr and args[1] in ("shape", "dtype", "device", "ndim")) or (
                node.op == "call_method" and target in ("size", "dim")) or (
                target is operator.getitem and self.flows.get(args[0]) is None):
            self.flows[node] = None  # shapes and their entries: no channels
        elif target in _ADD or target in _MUL or (node.op == "call_method" and target in
                                                ("add", "add_", "mul", "mul_", "sub", "div")):
            self.binary(node, args[0], args[1] if len(args) > 1 else node.kwargs.get("other"))
        elif target is torch.cat or (node.op == "call_method" and target == "cat"):
            self.cat(node)
        elif target is torch.flatten or (node.op == "call_method" and target == "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, self.flow(args[0], node), start, end)
        elif target is torch.permute or (node.op == "call_method" and target == "permute"):
            dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
            flow = self.flow(args[0], node)
            dims = [d % flow.ndim for d in dims]
            self.flows[node] = _Flow(dims.index(flow.dim), flow.ndim, flow.segments)
        elif target is F.layer_norm:
            flow = self.flow(args[0], node)
            shape = args[1] if len(args) > 1 else node.kwargs["normalized_shape"]
            weight = args[2] if len(args) > 2 else node.kwargs.get("weight")
            bias = args[3] if len(args) > 3 else node.kwargs.get("bias")
            keys = [self.tensor_of(t)[0] for t in (weight, bias)]
            owner = next((k.rpartition(".")[0] for k in keys if k), None)
            if owner is None:
                raise TypeError(f"graph node {node.name!r}: layer_norm without a module's weight")
            self.layer_norm(node, flow, tuple(shape), None, owner, *keys)
            self.flows[node] = flow
        elif name == "stochastic_depth" or target in _PASSING_FUNCTIONS or (
                node.op == "call_method" and target in _PASSING_METHODS):
            flow = self.flow(args[0], node)
            self.flows[node] = _Flow(flow.dim, len(self.shape(node)) or flow.ndim, flow.segments)
            act = _ACTIVATION_FUNCTIONS.get(target) or (target.rstrip("_") if node.op == "call_method" and
                                                         target.startswith("relu") else None)
            if act is not None:
                self.activation_point(node, act, flow)
        elif target is torch.mean or (node.op == "call_method" and target == "mean"):
            self.mean(node)
        else:
            kind = "method" if node.op == "call_method" else "function"
            raise TypeError(f"graph node {node.name!r} calls the {kind} {name!r}: channel pruning does not know "
                            "how it uses the channels")

    def binary(self, node, a, b) -> None:
        flows = [self.flows.get(x) if isinstance(x, fx.Node) else None for x in (a, b)]
        params = [self.tensor_of(x) for x in (a, b)]
        if flows[0] is not None and flows[1] is not None:
            fa, fb = flows
            if fa.dim - fa.ndim != fb.dim - fb.ndim:
                raise TypeError(f"graph node {node.name!r} combines tensors whose channels are on different dims")
            self.unite_flows(fa, fb, f"graph node {node.name!r}")
            self.flows[node] = fa if fa.ndim >= fb.ndim else fb
            return
        flow = flows[0] if flows[0] is not None else flows[1]
        if flow is None:
            self.flows[node] = None
            return
        key, tensor = params[1] if flows[0] is not None else params[0]
        if key is not None:  # a parameter broadcast against the channels (layer scale)
            offset = tensor.ndim - (flow.ndim - flow.dim)
            if offset < 0 or tensor.shape[offset] == 1:
                pass  # does not index the channels
            elif any(tensor.shape[d] != 1 for d in range(tensor.ndim) if d != offset):
                raise TypeError(f"graph node {node.name!r}: parameter {key} of shape {tuple(tensor.shape)} "
                                "varies along more than the channels")
            else:
                self.record(key, (None,) * offset + (flow.segments,))
        else:
            other = b if flows[0] is not None else a
            if isinstance(other, fx.Node):
                raise TypeError(f"graph node {node.name!r} combines the channels with a tensor "
                                f"({other.format_node()}) the analysis does not follow")
        self.flows[node] = flow

    def cat(self, node) -> None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        flows = [self.flow(t, node) for t in tensors]
        dim = dim % flows[0].ndim
        if any(f.dim != dim for f in flows):
            if any(f.dim == dim for f in flows):
                raise TypeError(f"graph node {node.name!r} concatenates along the channels of some inputs only")
            for f in flows[1:]:
                self.unite_flows(flows[0], f, f"graph node {node.name!r}")
            self.flows[node] = flows[0]
            return
        self.flows[node] = _Flow(dim, flows[0].ndim, tuple(s for f in flows for s in f.segments))

    def mean(self, node) -> None:
        flow = self.flow(node.args[0], node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        dims = [dims] if isinstance(dims, int) else list(dims or range(flow.ndim))
        dims = sorted(d % flow.ndim for d in dims)
        if flow.dim in dims:
            raise TypeError(f"graph node {node.name!r} averages over the channels")
        shift = 0 if keep else sum(d < flow.dim for d in dims)
        self.flows[node] = _Flow(flow.dim - shift, flow.ndim - (0 if keep else len(dims)), flow.segments)

    def output(self, node) -> None:
        if self.head is None:
            raise TypeError("no task head: the network's output is not written by a final nn.Linear")
        value = node.args[0]
        if not isinstance(value, fx.Node) or self.flows.get(value, "absent") is not None:
            raise TypeError("the network's output must be the task head's output (one tensor of class scores)")


def trace_filter_space(model: nn.Module, input_shape=None):
    """Discover the channel groups of any traceable CNN.

    Parameters
    ----------
    model : torch.nn.Module
        The network, ending in a ``nn.Linear`` task head. It is traced with
        :func:`torch.fx.symbolic_trace` in eval mode and run once on a zero image batch of
        ``input_shape`` to read tensor shapes; it is not modified.
    input_shape : tuple of int, optional
        ``(C, H, W)`` of one image; default: the first convolution's input channels at 64 x 64.
        It matters only where ``(C, H, W)`` is flattened into a Linear layer without an
        adaptive pooling before it.

    Returns
    -------
    space : FilterSpace
        Groups named after the first module that writes them, in graph order.
    info : TracedChannels
        The head's name, the discovery time and the graph.

    Raises
    ------
    TypeError
        If the network cannot be traced or uses channels in a way channel pruning cannot
        follow; the message names the module or graph node.
    """
    from .filter_space import ChannelGroup, FilterSpace  # noqa: PLC0415 (the space imports this module lazily)

    start = time.perf_counter()
    if input_shape is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise TypeError(f"{type(model).__name__} has no nn.Conv2d: not a convolutional network")
        input_shape = (first.in_channels, 64, 64)
    was_training = model.training
    model.eval()
    try:
        try:
            graph_module = fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
            raise TypeError(f"{type(model).__name__} cannot be traced by torch.fx ({type(exc).__name__}: {exc}); "
                            "channel pruning needs a graph without data-dependent control flow") from exc
        ref = next(iter(model.parameters()))
        with torch.no_grad():
            ShapeProp(graph_module).propagate(torch.zeros((1, *input_shape), dtype=ref.dtype, device=ref.device))
        analysis = _Analysis(model, graph_module.graph).run()
    finally:
        model.train(was_training)
    return _space_of(analysis, ChannelGroup, FilterSpace), TracedChannels(
        analysis.head, time.perf_counter() - start, graph_module.graph)


def _space_of(a: _Analysis, ChannelGroup, FilterSpace):
    """Turn the analysis's variables into named groups and axes."""
    roots, names = [], {}
    for v in range(1, len(a.parent)):
        r = a.find(v)
        if r != INPUT and r not in names:
            names[r] = a.producer[r]
            roots.append(r)
    writers: dict = {}  # per group, the layers that write its values (not the gates that scale them)
    for v in range(1, len(a.parent)):
        if a.producer[v] not in a.gates:
            writers.setdefault(a.find(v), []).append(a.producer[v])

    def axis(segments):
        if segments is None:
            return None
        out = []
        for v, rep in segments:
            r = a.find(v)
            if r == INPUT:
                if len(segments) != 1:
                    raise TypeError("a concatenation mixes image channels with prunable ones")
                return None
            out.append((names[r], rep))
        return out[0][0] if len(out) == 1 and out[0][1] == 1 else tuple(out)

    state_axes = {}
    for key, axes in a.state_axes.items():
        state_axes[key] = tuple(axis(s) for s in axes)
    points: dict = {r: [] for r in roots}
    for module, act, dim, segments in a.points:
        for i, (v, rep) in enumerate(segments):
            r = a.find(v)
            if r != INPUT and rep == 1:
                entry = (module, act) if dim == 1 and len(segments) == 1 else \
                    (module, act, dim, None if len(segments) == 1 else (axis(segments), i))
                if entry not in points[r]:
                    points[r].append(entry)
    for r in roots:  # no activation follows: the magnitude of what the group's writers produce
        if not points[r]:
            for module in writers[r]:
                dim = 1 if isinstance(a.modules[module], nn.Conv2d) else -1
                points[r].append((module, "abs") if dim == 1 else (module, "abs", dim, None))
    groups = [ChannelGroup(names[r], a.size[r], "stream" if len(writers[r]) > 1 else "inner", tuple(points[r]),
                           unit=a.unit[r]) for r in roots]
    for r in roots:
        if a.size[r] % a.unit[r]:
            raise TypeError(f"group {names[r]!r}: {a.size[r]} channels are not whole blocks of {a.unit[r]}")
    mixers = {m: axis(s) for m, s in a.mixers.items() if axis(s) is not None}
    normalisers = {m: axis(s) for m, s in a.normalisers.items() if axis(s) is not None}
    return FilterSpace(groups, state_axes=state_axes, head=a.head, mixers=mixers, normalisers=normalisers)
