"""ResNet backbones: construction, description, pickle-free storage and fingerprints.

Every network built here is a plain :class:`torchvision.models.ResNet` instance with
torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``fc`` ...), so the
rest of the package works the same on a backbone a user built with torchvision itself.
A :class:`ResNetSpec` describes the shape of any such network (block type, depths,
widths, stem) as plain JSON, which is how architectures are stored next to weights.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .safetensors_reader import header_json, read_header, read_tensors, state_mismatch

__all__ = [
    "ResNetSpec",
    "spec_of",
    "build_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "cifar_resnet18",
    "cifar_resnet34",
    "cifar_resnet50",
    "save_backbone",
    "load_backbone",
    "fingerprint",
    "backbone_metadata",
    "materialise",
]

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}

# Bounds of a sane spec. They keep every tensor of the full-size network (built on the meta
# device to check a file) within int64 element counts; real ResNets are far inside them.
_MAX_CHANNELS = 2**24  # planes, stem_width, num_classes
_MAX_IN_CHANNELS = 2**16
_MAX_BLOCKS = 2**10  # per stage (ResNet-1202 has 200)
_MAX_STEM = 2**8  # stem kernel size, stride and padding
# Every residual block has at least two convolutions and two BatchNorms: 12 state-dict entries.
_MIN_BLOCK_ENTRIES = 12


def _short(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (values from damaged files can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _checked_int(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a ValueError naming the field (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {_short(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _checked_ints(name: str, values, low: int, high: int) -> tuple:
    """Four ints in ``[low, high]`` (one per stage), or a ValueError naming the field."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or len(values) != 4:
        raise ValueError(f"{name} must be 4 ints (one per stage), got {_short(values)}")
    return tuple(_checked_int(f"{name}[{i}]", v, low, high) for i, v in enumerate(values))


@dataclass(frozen=True)
class ResNetSpec:
    """The shape of a torchvision-style ResNet, as plain data.

    Parameters
    ----------
    block : {"basic", "bottleneck"}
        Residual block type.
    layers : tuple of int
        Number of blocks in each of the four stages.
    planes : tuple of int
        Base width (``planes``) of each stage; torchvision uses ``(64, 128, 256, 512)``.
    in_channels : int
        Channels of the input images.
    num_classes : int
        Output size of the final linear layer ``fc``.
    stem_kernel, stem_stride, stem_padding : int
        Geometry of the stem convolution ``conv1``.
    maxpool : bool
        Whether the stem ends with torchvision's 3x3 stride-2 max-pool.
    stem_width : int, default=0
        Output channels of the stem; 0 means ``planes[0]``.

    Raises
    ------
    ValueError
        Naming the field, for a value of the wrong type (floats, strings and bools are not
        ints) or outside sane bounds: at most 2**24 planes, stem channels and classes,
        2**16 input channels, 1024 blocks per stage, 256 for the stem's kernel, stride
        and padding.
    """

    block: str
    layers: tuple = (2, 2, 2, 2)
    planes: tuple = (64, 128, 256, 512)
    in_channels: int = 3
    num_classes: int = 1000
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_padding: int = 3
    maxpool: bool = True
    stem_width: int = field(default=0)

    def __post_init__(self):
        if not isinstance(self.block, str) or self.block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {_short(self.block)}")
        if not isinstance(self.maxpool, bool):
            raise ValueError(f"maxpool must be a bool, got {type(self.maxpool).__name__} "
                             f"{_short(self.maxpool)}")
        checked = {
            "layers": _checked_ints("layers", self.layers, 1, _MAX_BLOCKS),
            "planes": _checked_ints("planes", self.planes, 1, _MAX_CHANNELS),
            "in_channels": _checked_int("in_channels", self.in_channels, 1, _MAX_IN_CHANNELS),
            "num_classes": _checked_int("num_classes", self.num_classes, 1, _MAX_CHANNELS),
            "stem_kernel": _checked_int("stem_kernel", self.stem_kernel, 1, _MAX_STEM),
            "stem_stride": _checked_int("stem_stride", self.stem_stride, 1, _MAX_STEM),
            "stem_padding": _checked_int("stem_padding", self.stem_padding, 0, _MAX_STEM),
            "stem_width": _checked_int("stem_width", self.stem_width, 0, _MAX_CHANNELS),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        if self.stem_width == 0:
            object.__setattr__(self, "stem_width", self.planes[0])

    def to_dict(self) -> dict:
        """Return the spec as a JSON-serialisable dict."""
        d = asdict(self)
        d["layers"], d["planes"] = list(self.layers), list(self.planes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping) -> "ResNetSpec":
        """Rebuild a spec from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If ``data`` is not a mapping, lacks ``block``, has unknown keys, or any value is
            of the wrong type or out of range; the message names the field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a ResNetSpec is read from a mapping, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ResNetSpec fields: {sorted(map(str, unknown))}")
        if "block" not in data:
            raise ValueError("ResNetSpec field 'block' is missing")
        return cls(**data)

    def build(self) -> ResNet:
        """Construct a freshly initialised network of this shape."""
        return build_resnet(self)

    def skeleton(self, max_blocks: int | None = None) -> ResNet:
        """The network of this shape on the ``meta`` device: shapes only, no memory for weights.

        Parameters
        ----------
        max_blocks : int, optional
            Refuse a spec with more residual blocks than this before building anything
            (e.g. the most a file's tensors can hold), so a
            damaged spec cannot make millions of modules.

        Raises
        ------
        ValueError
            If the spec has more than ``max_blocks`` blocks.
        """
        if max_blocks is not None and sum(self.layers) > max_blocks:
            raise ValueError(f"layers {list(self.layers)} describe {sum(self.layers)} residual blocks; the "
                             f"stored data has room for at most {max_blocks}")
        with torch.device("meta"):
            return build_resnet(self)


def max_blocks_for(n_entries: int) -> int:
    """The most residual blocks a state dict of ``n_entries`` tensors can hold (12 entries per block)."""
    return int(n_entries) // _MIN_BLOCK_ENTRIES


def materialise(skeleton: nn.Module, state) -> nn.Module:
    """A meta-device network (:meth:`ResNetSpec.skeleton`) on the CPU holding the tensors of ``state``.

    Check the shapes of ``state`` against ``skeleton`` first (see
    :func:`metaprune.backbone.safetensors_reader.state_mismatch`): then the memory allocated
    is that of ``state``, never that of a network the stored data merely describes.

    Parameters
    ----------
    skeleton : torch.nn.Module
        A network on the ``meta`` device (shapes only), e.g. ``spec.skeleton()``.
    state : mapping of str to torch.Tensor
        Its complete state dict.

    Returns
    -------
    torch.nn.Module
        ``skeleton`` itself, now on the CPU and holding ``state``.

    Raises
    ------
    ValueError
        If ``state`` does not load into ``skeleton``.

    Examples
    --------
    >>> net = cifar_resnet18(width=2, in_channels=1, num_classes=10)
    >>> copy = materialise(spec_of(net).skeleton(), net.state_dict())
    >>> fingerprint(copy) == fingerprint(net)
    True
    """
    module = skeleton.to_empty(device="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the weights do not match the stored architecture: {exc}") from None
    return module


def state_shapes(module: nn.Module) -> dict:
    """Entry name -> shape of a module's state dict (works on the ``meta`` device)."""
    return {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}


def initialise_(model: nn.Module) -> nn.Module:
    """torchvision's ResNet initialisation, in place: He-normal (fan-out) convs, identity BatchNorms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    return model


def build_resnet(spec: ResNetSpec) -> ResNet:
    """Build a :class:`torchvision.models.ResNet` of any width from a :class:`ResNetSpec`.

    torchvision hard-codes the stage widths; this constructor reproduces its layout
    (same module names, same initialisation) with the widths of ``spec``.
    """
    block = _BLOCKS[spec.block]
    model = ResNet.__new__(ResNet)
    nn.Module.__init__(model)
    model._norm_layer = nn.BatchNorm2d
    model.inplanes = spec.stem_width
    model.dilation = 1
    model.groups = 1
    model.base_width = 64
    model.conv1 = nn.Conv2d(
        spec.in_channels,
        spec.stem_width,
        kernel_size=spec.stem_kernel,
        stride=spec.stem_stride,
        padding=spec.stem_padding,
        bias=False,
    )
    model.bn1 = nn.BatchNorm2d(spec.stem_width)
    model.relu = nn.ReLU(inplace=True)
    model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if spec.maxpool else nn.Identity()
    strides = (1, 2, 2, 2)
    for i, (planes, n_blocks, stride) in enumerate(zip(spec.planes, spec.layers, strides), start=1):
        setattr(model, f"layer{i}", model._make_layer(block, planes, n_blocks, stride=stride))
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.fc = nn.Linear(spec.planes[3] * block.expansion, spec.num_classes)
    return initialise_(model)


def spec_of(model: ResNet) -> ResNetSpec:
    """Describe an existing torchvision-style ResNet (including a user-modified one).

    Raises
    ------
    TypeError
        If ``model`` does not have the torchvision ResNet layout.
    """
    if not all(hasattr(model, n) for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")):
        raise TypeError(f"expected a torchvision-style ResNet, got {type(model).__name__}")
    first = model.layer1[0]
    if isinstance(first, Bottleneck):
        block = "bottleneck"
    elif isinstance(first, BasicBlock):
        block = "basic"
    else:
        raise TypeError(f"unsupported residual block type {type(first).__name__}")
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    conv1 = model.conv1
    return ResNetSpec(
        block=block,
        layers=tuple(len(s) for s in stages),
        planes=tuple(s[0].conv1.out_channels if block == "basic" else s[0].conv3.out_channels // 4 for s in stages),
        in_channels=conv1.in_channels,
        num_classes=model.fc.out_features,
        stem_kernel=conv1.kernel_size[0],
        stem_stride=conv1.stride[0],
        stem_padding=conv1.padding[0],
        maxpool=isinstance(model.maxpool, nn.MaxPool2d),
        stem_width=conv1.out_channels,
    )


def _standard(depth: int, cifar: bool, width: int, in_channels: int, num_classes: int) -> ResNet:
    block, layers = _DEPTHS[depth]
    if width < 1:
        raise ValueError(f"width must be a positive int, got {width}")
    planes = (width, 2 * width, 4 * width, 8 * width)
    stem = dict(stem_kernel=3, stem_stride=1, stem_padding=1, maxpool=False) if cifar else {}
    spec = ResNetSpec(block, layers, planes, in_channels=in_channels, num_classes=num_classes, **stem)
    return build_resnet(spec)


def resnet18(width: int = 64, in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ImageNet-style ResNet-18 (7x7 stride-2 stem, max-pool); ``width`` is the first stage's planes."""
    return _standard(18, False, width, in_channels, num_classes)


def resnet34(width: int = 64, in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ImageNet-style ResNet-34; see :func:`resnet18`."""
    return _standard(34, False, width, in_channels, num_classes)


def resnet50(width: int = 64, in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ImageNet-style ResNet-50 (Bottleneck blocks); see :func:`resnet18`."""
    return _standard(50, False, width, in_channels, num_classes)


def cifar_resnet18(width: int = 64, in_channels: int = 3, num_classes: int = 100) -> ResNet:
    """CIFAR-style ResNet-18: 3x3 stride-1 stem, no max-pool, stage widths ``width * (1, 2, 4, 8)``.

    Examples
    --------
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> net = cifar_resnet18(width=16)
    >>> net.layer4[1].conv2.out_channels
    128
    """
    return _standard(18, True, width, in_channels, num_classes)


def cifar_resnet34(width: int = 64, in_channels: int = 3, num_classes: int = 100) -> ResNet:
    """CIFAR-style ResNet-34; see :func:`cifar_resnet18`."""
    return _standard(34, True, width, in_channels, num_classes)


def cifar_resnet50(width: int = 64, in_channels: int = 3, num_classes: int = 100) -> ResNet:
    """CIFAR-style ResNet-50 (Bottleneck blocks); see :func:`cifar_resnet18`."""
    return _standard(50, True, width, in_channels, num_classes)


def fingerprint(model: nn.Module) -> str:
    """A stable SHA-256 of a network's state: names, dtypes, shapes and values.

    Two networks with bit-identical weights and buffers have the same fingerprint,
    whatever device they live on.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_backbone(model: nn.Module, path, metadata: dict | None = None) -> None:
    """Save a network's weights and architecture recipe to one safetensors file (no pickle).

    Parameters
    ----------
    model : torch.nn.Module
        The network to save: a torchvision-style ResNet, or any network carrying an
        architecture recipe (:func:`metaprune.backbone.architectures.architecture_of`).
    path : str or path-like
        Destination file (conventionally ``*.safetensors``).
    metadata : dict, optional
        Extra JSON-serialisable information stored in the file header (e.g. how the
        checkpoint was made).
    """
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": "metaprune.backbone",
        "spec": json.dumps(_architecture_of(model).to_dict()),
        "fingerprint": fingerprint(model),
        "metadata": json.dumps(metadata or {}),
    }
    save_file(state, str(path), metadata=header)


def load_backbone(path, map_location: str = "cpu", architectures=None) -> nn.Module:
    """Load a network saved by :func:`save_backbone`.

    The file is checked before anything is allocated: its JSON spec must be a valid
    architecture recipe whose state-dict shapes equal those of the tensors in the file.
    Then the weights are loaded and checked against the stored fingerprint.
    ``architectures`` maps the names of users' own network classes to their constructors
    (see :class:`metaprune.backbone.architectures.ConstructorSpec`).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a metaprune backbone, is corrupted, or fails its fingerprint;
        the message names the file and the field.
    """
    header, shapes = read_header(path, "metaprune.backbone", "backbone")
    spec = spec_from_header(header, path, architectures)
    try:
        skeleton = spec.skeleton(max_blocks=max_blocks_for(len(shapes)))
    except ValueError as exc:
        raise ValueError(f"{path}: spec: {exc}") from None
    problem = state_mismatch(state_shapes(skeleton), shapes)
    if problem is not None:
        raise ValueError(f"{path}: the weights do not match the stored architecture: {problem}")
    try:
        model = materialise(skeleton, read_tensors(path, "backbone"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if fingerprint(model) != header.get("fingerprint"):
        raise ValueError(f"{path}: weights do not match the stored fingerprint (file corrupted?)")
    return model.to(map_location)


def spec_from_header(header, path, architectures=None):
    """The architecture recipe stored in a file header's ``spec`` entry.

    A :class:`ResNetSpec`, or any recipe of :mod:`metaprune.backbone.architectures`
    (``architectures``: constructors of users' own networks, by name).

    Raises
    ------
    ValueError
        Naming the file, the entry and the field, if the entry is missing or invalid.
    """
    from .architectures import architecture_from_dict  # noqa: PLC0415 (it imports this module)

    try:
        return architecture_from_dict(header_json(header, "spec", path), architectures)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(f"{path}:") else f"{path}: spec: {message}") from None


def backbone_metadata(path) -> dict:
    """Return the free-form metadata stored by :func:`save_backbone`.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If it is not a backbone file or its metadata is not a JSON object.
    """
    header, _ = read_header(path, "metaprune.backbone", "backbone")
    metadata = header_json(header, "metadata", path, default={})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: the header entry 'metadata' is not a JSON object")
    return metadata


def _architecture_of(model: nn.Module):
    from .architectures import architecture_of  # noqa: PLC0415 (it imports this module)

    return architecture_of(model)
