"""``PrunedModelBank``: one pre-trained backbone and the pruning results of many tasks.

This module holds the class itself: construction and opening, the description of the bank
(backbone, architecture, filter space, task ids) and its life cycle (snapshots, closing,
pickling). Its writes (:meth:`~PrunedModelBank.add`, :meth:`~PrunedModelBank.build`) come
from :class:`._writes.BankWrites` and its queries from :class:`._queries.BankQueries`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from contextlib import contextmanager

from torch import nn

from ..backbone.architectures import architecture_from_dict, architecture_of
from ..backbone.resnet import fingerprint, materialise
from ..channels.filter_space import FilterSpace
from .._version import __version__
from ._codec import decode_tensors, dumps, encode_tensors, loads
from ._queries import BankQueries
from ._records import RowDecoder
from ._storage import BankStorage
from ._writes import BankWrites

__all__ = ["PrunedModelBank"]


class PrunedModelBank(BankWrites, BankQueries):
    """A store of pruned networks: one pre-trained backbone and, per task, its pruning result.

    The bank holds the backbone once (weights, fingerprint, filter space) and, for every
    training task, its class labels, selection of kept channels, pruned weights (BatchNorm
    statistics and head included), class prototypes of the pre-trained backbone, metrics and
    pruning configuration. It lives in one SQLite file (WAL journal, one transaction per
    task; tensors as safetensors bytes, everything else JSON, nothing pickled) or in memory.

    Meta-vote pruning only *reads* a bank: estimators keep a reference to it (cloning an
    estimator shares the bank, see :meth:`__sklearn_clone__`) and never write to it.

    Parameters
    ----------
    backbone : torchvision.models.ResNet
        The pre-trained network every task is pruned from.
    path : str or path-like, optional
        Bank file. None keeps the bank in memory. A missing or empty file is created; an
        existing bank file of the same backbone is opened (so a script that creates and
        builds a bank can simply be re-run to resume); a bank of another backbone, or a
        file that is not a bank, is an error and is left untouched.

    Attributes
    ----------
    path : str or None
        The bank file (None in memory).
    read_only : bool
        Whether writes are refused (see :meth:`open`).
    input_shape : tuple of 3 int or None
        ``(C, H, W)`` of the images its tasks were pruned on (fixed by the first task).
    last_build : BuildSummary or None
        What the last :meth:`build` call of this object added, found stored, and left to
        other running builds.

    Raises
    ------
    ValueError
        If ``path`` holds a bank of another backbone, or a file that is not a bank.

    See Also
    --------
    PrunedModelBank.open : Reopen a bank file.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from metaprune import IterativeFilterPruner
    >>> from metaprune.bank import PrunedModelBank
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> _ = torch.manual_seed(0)
    >>> bank = PrunedModelBank(cifar_resnet18(width=2, in_channels=1, num_classes=10))
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 1, 8, 8)).astype("float32"); y = np.repeat([3, 7], 20)
    >>> ifp = IterativeFilterPruner(pruning_ratio=0.5, n_iterations=2, prune_every=1, head_epochs=1,
    ...                             batch_size=20, random_state=0)
    >>> bank.add("task-a", X, y, ifp).task_ids
    ['task-a']
    >>> classes, incidence = bank.class_incidence()
    >>> classes, incidence
    (array([3, 7]), array([[ True,  True]]))
    """

    def __init__(self, backbone, path=None):
        if not isinstance(backbone, nn.Module):
            raise ValueError(f"backbone must be a pre-trained network (a torchvision-style ResNet or any "
                             f"traceable CNN with an architecture recipe), "
                             f"got {type(backbone).__name__}")
        spec, space = architecture_of(backbone), FilterSpace.from_model(backbone)
        architectures = {spec.name: spec.constructor} if getattr(spec, "constructor", None) else None
        backbone_print = fingerprint(backbone)
        meta = {"fingerprint": backbone_print, "spec": dumps(spec.to_dict()),
                "filter_space": dumps(space.to_dict()), "metaprune_version": __version__}
        weights = encode_tensors(backbone.state_dict())
        storage = BankStorage.in_memory(meta, weights) if path is None \
            else BankStorage.create_or_open(path, meta, weights)
        try:
            self._attach(storage, architectures)
            if self.fingerprint != backbone_print:
                raise ValueError(f"{storage.name} is a bank of another backbone (fingerprint "
                                 f"{self.fingerprint[:12]}..., this backbone's is {backbone_print[:12]}...); "
                                 f"use PrunedModelBank.open to read it, or another path for a new bank")
        except BaseException:
            storage.close()
            raise

    @classmethod
    def open(cls, path, read_only=False, architectures=None) -> "PrunedModelBank":
        """Reopen a bank file.

        Parameters
        ----------
        path : str or path-like
            A file written by :class:`PrunedModelBank`.
        read_only : bool, default=False
            Refuse every write (readers next to a running build, untrusted files).
        architectures : mapping of str to callable, optional
            Constructors of users' own backbone classes, by the name of their
            :class:`~metaprune.backbone.architectures.ConstructorSpec` (not needed for
            ResNets and torchvision builders).

        Returns
        -------
        PrunedModelBank

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is not a bank, is damaged, or has an unknown schema version.
        """
        storage = BankStorage.open(path, read_only=read_only)
        bank = cls.__new__(cls)
        try:
            bank._attach(storage, architectures)
        except BaseException:
            storage.close()
            raise
        return bank

    def _attach(self, storage: BankStorage, architectures=None) -> None:
        """Bind to a storage and check its architecture and filter space agree.

        ``architectures``: constructors of users' own backbone classes, by recipe name."""
        self._storage = storage
        self._architectures = architectures
        meta = storage.meta
        try:
            self._spec = architecture_from_dict(loads(meta["spec"], "architecture (meta)"), self._architectures)
            self._space = FilterSpace.from_dict(loads(meta["filter_space"], "filter space (meta)"))
            # shapes only (no memory); every block has a group of its own, which bounds the spec's depth
            skeleton = self._spec.skeleton(max_blocks=len(self._space))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{storage.name}: the stored architecture or filter space is invalid "
                             f"({exc})") from None
        if FilterSpace.from_model(skeleton) != self._space:
            raise ValueError(f"{storage.name}: the stored filter space does not match the stored "
                             f"architecture; the bank file is damaged")
        self._decoder = RowDecoder(self._space, skeleton.state_dict(), storage.name)
        self._backbone = None
        self._lock = threading.Lock()
        self._cache = {}  # name -> (storage version, value): dropped as soon as any connection writes
        self.last_build = None

    # -- description ---------------------------------------------------------------------------
    @property
    def path(self):
        """The bank file, or None for an in-memory bank."""
        return None if self._storage.name == ":memory:" else self._storage.name

    @property
    def read_only(self) -> bool:
        """Whether this bank refuses writes."""
        return self._storage.read_only

    @property
    def fingerprint(self) -> str:
        """Fingerprint (:func:`metaprune.backbone.resnet.fingerprint`) of the pre-trained backbone."""
        return self._storage.meta["fingerprint"]

    @property
    def spec(self):
        """Architecture of the pre-trained backbone."""
        return self._spec

    @property
    def filter_space(self) -> FilterSpace:
        """Channel groups of the pre-trained backbone."""
        return self._space

    @property
    def label_kind(self):
        """``"int"`` or ``"str"``: the type of class labels, fixed by the first task (None while empty)."""
        return self._storage.label_kind()

    @property
    def input_shape(self):
        """``(C, H, W)`` of the images the bank's tasks were pruned on, fixed by the first task
        (None while empty, or for a bank written before metaprune recorded it)."""
        return self._storage.input_shape()

    @property
    def backbone(self) -> nn.Module:
        """The pre-trained network (loaded from the bank once, checked against its fingerprint).

        The same module is returned every time; do not modify it.
        """
        with self._lock:
            if self._backbone is None:
                blob, sha = self._storage.backbone_weights()
                what = f"backbone weights in {self._storage.name}"
                state = self._decoder.check_backbone_state(decode_tensors(blob, sha, what), what)
                model = materialise(self._spec.skeleton(), state)  # allocates the checked weights only
                if fingerprint(model) != self.fingerprint:
                    raise ValueError(f"{self._storage.name}: the backbone weights do not match the stored "
                                     f"fingerprint; the bank file is damaged")
                self._backbone = model.eval()
            return self._backbone

    def _cached(self, name, compute):
        """``compute()``, reused until the bank changes (a write here or by any other connection)."""
        version = self._storage.version()  # read first: a write racing with compute() only causes a recompute
        hit = self._cache.get(name)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute()
        self._cache[name] = (version, value)
        return value

    @property
    def task_ids(self) -> list:
        """Ids of the stored tasks, in insertion order (a fresh list)."""
        return list(self._cached("task_ids", self._storage.task_ids))

    def __len__(self) -> int:
        return len(self._cached("task_ids", self._storage.task_ids))

    def __contains__(self, task_id) -> bool:
        return isinstance(task_id, str) and bool(self._storage.existing([task_id]))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed bank only answers ``repr``)."""
        return self._storage.closed

    def __repr__(self) -> str:
        where = "in memory" if self.path is None else repr(self.path)
        if self.closed:  # never raises: estimators holding a closed bank still print and store their config
            return f"PrunedModelBank({where}, closed, fingerprint={self.fingerprint[:12]}...)"
        return f"PrunedModelBank({where}, n_tasks={len(self)}, fingerprint={self.fingerprint[:12]}...)"

    def __sklearn_clone__(self):
        """Cloning an estimator that holds the bank shares the bank: return it unchanged."""
        return self

    def __reduce__(self):
        # sent to another process (joblib, Dask): a read-only handle on the same file, or an
        # in-memory copy. Only the path or SQLite's own image travels, never a connection.
        if self.path is not None:
            return _reopen, (str(Path(self.path).absolute()), self._architectures)
        return _from_image, (self._storage.image(), self._architectures)

    def close(self) -> None:
        """Close the database connection."""
        self._storage.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @contextmanager
    def snapshot(self):
        """Read one consistent state: inside the block, no task written elsewhere appears.

        Examples
        --------
        >>> with bank.snapshot():  # doctest: +SKIP
        ...     ids = bank.task_ids
        ...     classes, incidence = bank.class_incidence()  # rows match ids
        """
        with self._storage.snapshot():
            yield self


def _reopen(path, architectures=None):
    return PrunedModelBank.open(path, read_only=True, architectures=architectures)


def _from_image(image, architectures=None):
    bank = PrunedModelBank.__new__(PrunedModelBank)
    bank._attach(BankStorage.from_image(image, read_only=True), architectures)
    return bank
