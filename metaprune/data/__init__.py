"""Data in: everything between a user's images and a batch the network sees.

- :mod:`~metaprune.data.image_dataset` -- :class:`ImageDataset`, images and labels as read from disk.
- :mod:`~metaprune.data.loaders` -- the data sets metaprune reads (digits, CIFAR-100, Fashion-MNIST).
- :mod:`~metaprune.data.image_folders` -- a folder of images per class.
- :mod:`~metaprune.data.unpickler` -- the restricted unpickler for CIFAR's pickled batches.
- :mod:`~metaprune.data.labels` -- the one codec of class labels (int or str) to JSON and back.
- :mod:`~metaprune.data.checks` -- the input boundary of every estimator: images, labels, shapes, devices.
- :mod:`~metaprune.data.batches` -- memory layout of image tensors and the batched eval-mode forward.
- :mod:`~metaprune.data.preprocessing` -- uint8 NHWC images to normalised float NCHW.
- :mod:`~metaprune.data.augment` -- batched augmentations of self-supervised pre-training.
- :mod:`~metaprune.data.task`, :mod:`~metaprune.data.task_sampler` -- n-way tasks over a data set,
  and their sampling (both re-exported by :mod:`~metaprune.data.tasks`).
- :mod:`~metaprune.data.random_state` -- seeded generators from a ``random_state``.
"""
