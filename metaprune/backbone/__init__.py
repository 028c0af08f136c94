"""The pre-trained network that every task is pruned from.

- :mod:`~metaprune.backbone.resnet` -- CIFAR/ImageNet ResNet builders, architecture specs,
  fingerprints, backbone files.
- :mod:`~metaprune.backbone.architectures` -- recipes that rebuild any network without pickle
  (torchvision builders, users' own classes).
- :mod:`~metaprune.backbone.safetensors_reader` -- safetensors files read and checked before
  anything is allocated.
- :mod:`~metaprune.backbone.penultimate` -- penultimate features and class prototypes.
- :mod:`~metaprune.backbone.lr_schedule` -- the cosine learning rate (with warm-up) of every training loop.
- :mod:`~metaprune.backbone.pretrain` -- self-supervised (SimCLR, SimSiam) and supervised
  pre-training, resumable from checkpoints.
"""
