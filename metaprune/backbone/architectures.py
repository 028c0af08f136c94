"""Architecture recipes: how to rebuild a network without pickle, for any architecture.

A saved network (a backbone, a pruned task network, a bank's backbone) is its *recipe*
plus its weights (and, when pruned, its selection). Three kinds of recipe:

* :class:`~metaprune.backbone.resnet.ResNetSpec`: torchvision-style ResNets, described by
  their layout (read off any ResNet instance);
* :class:`TorchvisionSpec`: a torchvision classification builder and its keyword arguments
  (``mobilenet_v2``, ``efficientnet_b0``, ``convnext_tiny`` ...), always built with
  ``weights=None``, so nothing is ever downloaded;
* :class:`ConstructorSpec`: a user's own ``nn.Module`` class, named in the file; loading
  it needs the constructor passed by the caller (``architectures={"MyNet": MyNet}``), so a
  file never makes the loader import or run code of its choosing.

A network built by :func:`torchvision_backbone` (or given a recipe with
:func:`attach_architecture`) carries its recipe, and :func:`architecture_of` finds it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["TorchvisionSpec", "ConstructorSpec", "torchvision_backbone", "attach_architecture",
           "architecture_of", "architecture_from_dict"]

ATTRIBUTE = "metaprune_architecture"  # where a network carries its recipe
_FORBIDDEN = ("weights", "progress", "pretrained", "num_classes")


def _checked_kwargs(kwargs, what: str) -> dict:
    """JSON-scalar keyword arguments (numbers, bools, strings, None, and lists of those)."""
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{what}: kwargs must be a mapping, got {type(kwargs).__name__}")
    out = {}
    for key, value in kwargs.items():
        if not isinstance(key, str) or key in _FORBIDDEN:
            raise ValueError(f"{what}: keyword argument {key!r} is not allowed in a recipe")
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(v is None or isinstance(v, (bool, str, numbers.Real)) for v in items):
            raise ValueError(f"{what}: keyword argument {key!r} must be a number, bool, string or None")
        out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _checked_classes(num_classes, what: str) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or not \
            1 <= num_classes <= 2 ** 24:
        raise ValueError(f"{what}: num_classes must be an int in [1, 2**24], got {num_classes!r}")
    return int(num_classes)


def _classification_builders() -> set:
    import torchvision

    return set(torchvision.models.list_models(module=torchvision.models))


@dataclass(frozen=True)
class TorchvisionSpec:
    """A torchvision classification builder and its arguments.

    Parameters
    ----------
    builder : str
        Name in :func:`torchvision.models.list_models` (classification models), e.g.
        ``"mobilenet_v2"``.
    kwargs : dict
        Keyword arguments of the builder (``width_mult=0.5`` ...), JSON scalars only; never
        ``weights`` (networks are built at random init and get their weights from a file).
    num_classes : int
        Outputs of the final layer.

    Examples
    --------
    >>> spec = TorchvisionSpec("mobilenet_v2", {"width_mult": 0.5}, num_classes=10)
    >>> spec.build().classifier[1].out_features
    10
    """

    builder: str
    kwargs: dict = field(default_factory=dict)
    num_classes: int = 1000

    def __post_init__(self):
        what = f"torchvision recipe {self.builder!r}"
        if not isinstance(self.builder, str) or self.builder not in _classification_builders():
            raise ValueError(f"{what}: not a torchvision classification builder")
        object.__setattr__(self, "kwargs", _checked_kwargs(self.kwargs, what))
        object.__setattr__(self, "num_classes", _checked_classes(self.num_classes, what))

    in_channels = 3  # torchvision's classification builders read RGB images

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {"kind": "torchvision", "builder": self.builder, "kwargs": dict(self.kwargs),
                "num_classes": self.num_classes}

    def build(self) -> nn.Module:
        """A freshly initialised network (the builder's own initialisation)."""
        import torchvision

        builder = getattr(torchvision.models, self.builder)
        return attach_architecture(builder(weights=None, num_classes=self.num_classes, **self.kwargs), self)

    def skeleton(self, max_blocks: int | None = None) -> nn.Module:
        """The network on the ``meta`` device: shapes only. ``max_blocks`` is ignored (the
        builder fixes the depth)."""
        return _on_meta(self.build)


@dataclass(frozen=True)
class ConstructorSpec:
    """A user's own network class, rebuilt by a constructor the loader is given.

    Parameters
    ----------
    name : str
        The name the constructor is looked up by when loading (``architectures={name: cls}``).
    kwargs : dict
        Keyword arguments of the constructor, JSON scalars only.
    num_classes : int
        Outputs of the network's task head (its last ``nn.Linear``), which is rebuilt to this
        size after construction.
    in_channels : int
        Channels of the images it reads.
    constructor : callable, optional
        ``constructor(**kwargs)`` returns the network; not stored in files.
    """

    name: str
    kwargs: dict = field(default_factory=dict)
    num_classes: int = 1000
    in_channels: int = 3
    constructor: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        what = f"recipe {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a constructor recipe needs a non-empty name")
        object.__setattr__(self, "kwargs", _checked_kwargs(self.kwargs, what))
        object.__setattr__(self, "num_classes", _checked_classes(self.num_classes, what))
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, numbers.Integral) \
                or not 1 <= self.in_channels <= 2 ** 16:
            raise ValueError(f"{what}: in_channels must be an int in [1, 2**16], got {self.in_channels!r}")

    def to_dict(self) -> dict:
        """JSON-serialisable form (the constructor itself is not stored)."""
        return {"kind": "constructor", "name": self.name, "kwargs": dict(self.kwargs),
                "num_classes": self.num_classes, "in_channels": int(self.in_channels)}

    def build(self) -> nn.Module:
        """``constructor(**kwargs)`` with its task head resized to ``num_classes``."""
        if self.constructor is None:
            raise ValueError(f"the network was built by a user's constructor {self.name!r}: pass "
                             f"architectures={{{self.name!r}: <the class or function>}} to load it")
        from ..channels.filter_space import head_name

        model = self.constructor(**self.kwargs)
        if not isinstance(model, nn.Module):
            raise ValueError(f"constructor {self.name!r} returned a {type(model).__name__}, not an nn.Module")
        head_key = head_name(model)
        head = model.get_submodule(head_key)
        if head.out_features != self.num_classes:
            ref = head.weight
            model.set_submodule(head_key, nn.Linear(head.in_features, self.num_classes, head.bias is not None,
                                                    device=ref.device, dtype=ref.dtype))
        return attach_architecture(model, self)

    def skeleton(self, max_blocks: int | None = None) -> nn.Module:
        """The network on the ``meta`` device (``max_blocks`` is ignored)."""
        return _on_meta(self.build)


def _on_meta(build) -> nn.Module:
    """``build()`` on the ``meta`` device; a builder that reads tensor values while it builds
    (RegNet's width rules) is built on the CPU and moved there."""
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:  # "Cannot copy out of meta tensor"
        return build().to("meta")


def torchvision_backbone(builder: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """A torchvision network at random init that remembers its recipe (for saving and banks).

    Parameters
    ----------
    builder : str
        A torchvision classification builder, e.g. ``"mobilenet_v2"``.
    num_classes : int, default=1000
    **kwargs
        The builder's keyword arguments (``width_mult=0.5`` ...), except ``weights``:
        load weights from your own file with ``load_state_dict``.

    Examples
    --------
    >>> net = torchvision_backbone("mobilenet_v2", num_classes=10, width_mult=0.25)
    >>> architecture_of(net).to_dict()["builder"]
    'mobilenet_v2'
    """
    return TorchvisionSpec(builder, kwargs, num_classes).build()


def attach_architecture(model: nn.Module, spec) -> nn.Module:
    """Record ``spec`` as ``model``'s recipe (an attribute; it survives ``copy.deepcopy``)."""
    object.__setattr__(model, ATTRIBUTE, spec)
    return model


def architecture_of(model: nn.Module):
    """The recipe that rebuilds ``model``'s architecture, with its current number of classes.

    A torchvision-style ResNet is described from its layout
    (:func:`~metaprune.backbone.resnet.spec_of`); any other network must carry a recipe
    (:func:`torchvision_backbone`, :func:`attach_architecture`).

    Raises
    ------
    TypeError
        If the network has no recipe, or its recipe does not build a network of its shapes.
    """
    from dataclasses import replace

    from ..channels.filter_space import _has_resnet_layout, head_name
    from .resnet import spec_of, state_shapes

    if _has_resnet_layout(model):
        return spec_of(model)
    spec = getattr(model, ATTRIBUTE, None)
    if spec is None:
        raise TypeError(f"a {type(model).__name__} can be saved only with its architecture recipe: build it with "
                        "metaprune.torchvision_backbone(...) or give it one with "
                        "metaprune.attach_architecture(model, ConstructorSpec(...))")
    spec = replace(spec, num_classes=model.get_submodule(head_name(model)).out_features)
    if getattr(spec, "constructor", True) is None:
        return spec  # a user's class without its constructor: loading will need it
    skeleton = spec.skeleton()
    if state_shapes(skeleton) != state_shapes(model):
        raise TypeError(f"the recipe {spec.to_dict()} does not build a network of this {type(model).__name__}'s "
                        "shapes (was it changed after it was built?)")
    return spec


def architecture_from_dict(data, architectures: Mapping | None = None):
    """Rebuild a recipe from its ``to_dict`` form.

    Parameters
    ----------
    data : mapping
        A :class:`~metaprune.backbone.resnet.ResNetSpec`, :class:`TorchvisionSpec` or
        :class:`ConstructorSpec` dict.
    architectures : mapping of str to callable, optional
        Constructors of users' own networks, by the name their recipe gives.

    Raises
    ------
    ValueError
        If the data is not a valid recipe; the message names the field.
    """
    from .resnet import ResNetSpec

    if not isinstance(data, Mapping):
        raise ValueError(f"an architecture is read from a mapping, got {type(data).__name__}")
    kind = data.get("kind")
    if kind is None:
        return ResNetSpec.from_dict(data)
    fields = {k: v for k, v in data.items() if k != "kind"}
    if kind == "torchvision":
        unknown = set(fields) - {"builder", "kwargs", "num_classes"}
        if unknown or "builder" not in fields:
            raise ValueError(f"a torchvision recipe has the fields builder, kwargs, num_classes; got {sorted(fields)}")
        return TorchvisionSpec(**fields)
    if kind == "constructor":
        unknown = set(fields) - {"name", "kwargs", "num_classes", "in_channels"}
        if unknown or "name" not in fields:
            raise ValueError(f"a constructor recipe has the fields name, kwargs, num_classes, in_channels; "
                             f"got {sorted(fields)}")
        constructor = (architectures or {}).get(fields["name"])
        return ConstructorSpec(**fields, constructor=constructor)
    raise ValueError(f"unknown architecture kind {kind!r}")
