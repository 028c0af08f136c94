"""The read side of :class:`~metaprune.bank.PrunedModelBank`: what meta-vote pruning asks of a bank.

:class:`BankQueries` answers the vectorised queries: which classes every task has, the
tasks' selections and votes, their pruned (or expanded) weights, prototypes, metrics and
whole records, and a full check of the file. Every query reads its rows in one snapshot
and checks each value against the bank's filter space and architecture.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..backbone.resnet import materialise
from ..channels.pruned_model import pruned_skeleton
from ..channels.transfer import expand_state
from ..meta.voting import vote_counts as _count_votes
from ._records import check_task_id

__all__ = ["BankQueries"]


class BankQueries:
    """The queries of :class:`~metaprune.bank.PrunedModelBank` (a mixin: the bank is the only host).

    The host provides ``_storage`` (a :class:`~._storage.BankStorage`), ``_decoder`` (a
    :class:`~._records.RowDecoder`), ``_space`` and ``_spec`` (the backbone's filter space and
    architecture), ``_cached(name, compute)``, ``label_kind``, ``task_ids`` and ``backbone``.
    """

    def class_incidence(self):
        """Which classes every task has (for shared-class similarity), cached until the bank changes.

        Returns
        -------
        classes : numpy.ndarray
            The distinct class labels across the bank, sorted (int64 or str).
        incidence : numpy.ndarray of bool, shape (len(bank), len(classes))
            ``incidence[i, c]`` is True when task ``task_ids[i]`` has class ``classes[c]``.
            Both arrays are read-only.
        """
        return self._cached("class_incidence", self._compute_incidence)

    def _compute_incidence(self):
        labels = [self._decoder.classes(text) for text, _ in self._storage.read()]
        if labels:
            classes = np.unique(np.concatenate(labels))
            rows = np.repeat(np.arange(len(labels)), [len(c) for c in labels])
            incidence = np.zeros((len(labels), len(classes)), dtype=bool)
            incidence[rows, np.searchsorted(classes, np.concatenate(labels))] = True
        else:
            classes = np.zeros(0, dtype=str if self.label_kind == "str" else np.int64)
            incidence = np.zeros((0, 0), dtype=bool)
        classes.setflags(write=False)
        incidence.setflags(write=False)
        return classes, incidence

    def selections(self, task_ids) -> list:
        """The tasks' selections (kept channels per group, pre-trained numbering).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of Selection
            In the order of ``task_ids``.

        Raises
        ------
        KeyError
            If a task id is not in the bank.
        """
        return [self._decoder.selection(text) for text, _ in self._storage.read(_ids(task_ids))]

    def vote_counts(self, task_ids) -> dict:
        """How many of the tasks kept each channel (:func:`metaprune.meta.voting.vote_counts`).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        dict of str to numpy.ndarray
            Per group, int64 counts of full pre-trained length.
        """
        return _count_votes(self.selections(task_ids), self._space.sizes)

    def pruned_tasks(self, task_ids) -> list:
        """The tasks' selections together with their pruned state dicts, read in one snapshot.

        What meta-vote pruning needs of its neighbours: the rows are read once and each task
        is decoded once (rather than once by :meth:`selections` and again by
        :meth:`pruned_states`).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of (Selection, dict of str to torch.Tensor)
            In the order of ``task_ids``: the kept channels per group (pre-trained numbering)
            and the pruned state dict (pruned numbering, BatchNorm statistics and head
            ``fc.*`` included), as :meth:`selections` and :meth:`pruned_states` give them.

        Raises
        ------
        KeyError
            If a task id is not in the bank.
        ValueError
            If a task's stored data is damaged.
        """
        out = []
        for text, blobs in self._storage.read(_ids(task_ids), blobs=("weights",)):
            selection = self._decoder.selection(text)
            state = self._decoder.state(text, blobs["weights"], selection, len(self._decoder.classes(text)))
            out.append((selection, state))
        return out

    def pruned_states(self, task_ids) -> list:
        """The tasks' pruned state dicts (pruned numbering, BatchNorm statistics and head ``fc.*`` included).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of dict of str to torch.Tensor
            In the order of ``task_ids``; each loads into
            ``build_pruned_module(bank.spec, selection, n_classes)``.
        """
        return [state for _, state in self.pruned_tasks(task_ids)]

    def expanded_weights(self, task_ids) -> list:
        """The tasks' weights lifted to the pre-trained numbering (:func:`metaprune.channels.transfer.expand_state`).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of (dict, dict)
            Per task ``(values, present)``: full-size tensors and boolean presence masks.
        """
        pairs = self.pruned_tasks(task_ids)
        return [expand_state(state, selection, self._space) for selection, state in pairs]

    def prototypes(self, task_ids=None) -> list:
        """The tasks' class prototypes (mean pre-trained penultimate feature per class).

        Parameters
        ----------
        task_ids : sequence of str, optional
            Default: every task, in ``task_ids`` order.

        Returns
        -------
        list of (numpy.ndarray, numpy.ndarray) or None
            Per task ``(classes, prototypes)`` with ``prototypes[i]`` the prototype of
            ``classes[i]``; None for a task stored without prototypes.
        """
        ids = None if task_ids is None else _ids(task_ids)
        out = []
        for text, blobs in self._storage.read(ids, blobs=("prototypes",)):
            classes = self._decoder.classes(text)
            array = self._decoder.prototypes(text, blobs["prototypes"], len(classes))
            out.append(None if array is None else (classes, array))
        return out

    def record(self, task_id, *, weights=True):
        """Everything stored about one task.

        Parameters
        ----------
        task_id : str
        weights : bool, default=True
            Read the pruned weights and the prototypes as well. False reads the task's text
            fields only (classes, selection, metrics, config...), never its blobs: cheap
            whatever the network's size, e.g. to list metrics; the record's ``state`` and
            ``prototypes`` are then None.

        Returns
        -------
        TaskRecord

        Raises
        ------
        KeyError
            If the task is not in the bank.
        ValueError
            If its stored data is damaged.

        Examples
        --------
        >>> bank.record("task-a", weights=False).metrics["test_accuracy"]  # doctest: +SKIP
        0.75
        """
        blobs = ("weights", "prototypes") if weights else ()
        text, stored = self._storage.read([check_task_id(task_id)], blobs=blobs)[0]
        return self._decoder.record(text, stored if weights else None)

    def pruned_module(self, task_id) -> nn.Module:
        """Rebuild a task's pruned network (with its head), in eval mode.

        Parameters
        ----------
        task_id : str

        Returns
        -------
        torchvision.models.ResNet
            Physically pruned; outputs follow ``record(task_id).classes``.
        """
        record = self.record(task_id)
        skeleton = pruned_skeleton(self._spec, record.selection, record.n_classes)
        return materialise(skeleton, record.state).eval()  # the record's state is checked: no full network

    def verify(self) -> None:
        """Check the whole file: SQLite's page-level integrity, then every stored value.

        Reads every task (slow for large banks).

        Raises
        ------
        ValueError
            Naming the first problem found.
        """
        problems = self._storage.integrity_problems()
        if problems:
            raise ValueError(f"{self._storage.name} is damaged: {problems[:3]}")
        self.backbone  # noqa: B018  (loads and checks the fingerprint)
        for task_id in self.task_ids:
            self.record(task_id)


def _ids(task_ids) -> list:
    if isinstance(task_ids, str):
        raise ValueError(f"task_ids must be a sequence of task ids, got the single id {task_ids!r}")
    return [check_task_id(t) for t in task_ids]
