"""Reproducible n-way classification tasks over one labelled image set.

A :class:`Task` is a set of global class ids plus the positions of its training and test
images in the data set. A :class:`TaskSampler` fixes, once and with a seed, a disjoint test
pool and training pool for every class; all tasks it samples draw their training images from
the training pools and their test images from the test pools, so that

- no image is ever in both the training and the test part of a task, and
- no test image of any task is used for training by any other task (the bank's tasks and the
  new tasks share the pools).

It samples random tasks (:meth:`TaskSampler.sample`), tasks sharing exactly ``c`` classes with
a given task (:meth:`TaskSampler.sharing`, the paper's Group-I/II designs), and splits the
classes into two disjoint sets (:meth:`TaskSampler.disjoint_split`, the Group-III design:
test tasks whose classes never occur in a training task).

The pieces live in their own modules and are all importable from here:
:mod:`metaprune.data.task` (the :class:`Task` type, :func:`check_tasks`, :func:`shared_classes`)
and :mod:`metaprune.data.task_sampler` (:class:`TaskSampler`); the seeded generators they draw
from come from :func:`metaprune.data.random_state.as_generator`.
"""

from __future__ import annotations

from .task import Task, check_tasks, shared_classes
from .task_sampler import TaskSampler

__all__ = ["Task", "TaskSampler", "check_tasks", "shared_classes"]
