"""The filter space: which channels a network has, which a task keeps, and the network that results.

- :mod:`~metaprune.channels.filter_space` -- channel groups (channels tied by residual sums).
- :mod:`~metaprune.channels.tracing` -- the groups of any traceable CNN (MobileNet, EfficientNet,
  RegNet, VGG, ConvNeXt, DenseNet, your own), found from its ``torch.fx`` graph.
- :mod:`~metaprune.channels.selection` -- kept channels per group.
- :mod:`~metaprune.channels.surgery` -- physically smaller networks, and masks.
- :mod:`~metaprune.channels.transfer` -- weights between the full and the pruned numbering.
- :mod:`~metaprune.channels.scores` -- channel importance (mean post-activation outputs).
- :mod:`~metaprune.channels.complexity` -- parameters and FLOPs.
- :mod:`~metaprune.channels.pruned_model` -- the pruned-network file and :class:`PrunedModel`.
"""
