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
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ._files import read_safetensors

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
]

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


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
        if self.block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        object.__setattr__(self, "planes", tuple(int(n) for n in self.planes))
        if len(self.layers) != 4 or len(self.planes) != 4:
            raise ValueError("layers and planes must each have 4 entries (one per stage)")
        if min(self.layers) < 1 or min(self.planes) < 1 or self.in_channels < 1:
            raise ValueError("layers, planes and in_channels must be positive")
        if self.stem_width == 0:
            object.__setattr__(self, "stem_width", self.planes[0])

    def to_dict(self) -> dict:
        """Return the spec as a JSON-serialisable dict."""
        d = asdict(self)
        d["layers"], d["planes"] = list(self.layers), list(self.planes)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ResNetSpec":
        """Rebuild a spec from :meth:`to_dict` output; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ResNetSpec fields: {sorted(unknown)}")
        return cls(**data)

    def build(self) -> ResNet:
        """Construct a freshly initialised network of this shape."""
        return build_resnet(self)


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
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


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
    >>> from metaprune.models import cifar_resnet18
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


def save_backbone(model: ResNet, path, metadata: dict | None = None) -> None:
    """Save a ResNet's weights and architecture to one safetensors file (no pickle).

    Parameters
    ----------
    model : torchvision.models.ResNet
        The network to save.
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
        "spec": json.dumps(spec_of(model).to_dict()),
        "fingerprint": fingerprint(model),
        "metadata": json.dumps(metadata or {}),
    }
    save_file(state, str(path), metadata=header)


def load_backbone(path, map_location: str = "cpu") -> ResNet:
    """Load a network saved by :func:`save_backbone`.

    The file's architecture is rebuilt from its JSON spec and its weights are checked
    against the stored fingerprint.

    Raises
    ------
    ValueError
        If the file is not a metaprune backbone, is corrupted, or fails its fingerprint.
    """
    header, state = read_safetensors(path, "metaprune.backbone", "backbone")
    model = ResNetSpec.from_dict(json.loads(header["spec"])).build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored architecture: {exc}") from exc
    if fingerprint(model) != header.get("fingerprint"):
        raise ValueError(f"{path}: weights do not match the stored fingerprint (file corrupted?)")
    return model.to(map_location)


def backbone_metadata(path) -> dict:
    """Return the free-form metadata stored by :func:`save_backbone`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("metadata", "{}"))
