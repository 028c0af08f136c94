"""Data in: everything between a user's images and a batch the network sees.

- :mod:`~metaprune.data.loaders` -- the data sets metaprune reads (digits, CIFAR-100, Fashion-MNIST,
  image folders) as :class:`~metaprune.data.loaders.ImageDataset`.
- :mod:`~metaprune.data.unpickler` -- the restricted unpickler for CIFAR's pickled batches.
- :mod:`~metaprune.data.checks` -- the input boundary of every estimator: images, labels, shapes, devices.
- :mod:`~metaprune.data.batches` -- memory layout of image tensors and the batched eval-mode forward.
- :mod:`~metaprune.data.preprocessing` -- uint8 NHWC images to normalised float NCHW.
- :mod:`~metaprune.data.augment` -- batched augmentations of self-supervised pre-training.
- :mod:`~metaprune.data.tasks` -- n-way tasks over a data set, and their sampling.
"""
