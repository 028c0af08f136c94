"""Pruners that build the sub-network at its target size at once, then fine-tune it.

:class:`MetaVotePruner` (the paper's Alg. 2) picks channels by votes of the most similar
tasks in a :class:`~metaprune.bank.PrunedModelBank` and initialises them with the
neighbours' averaged weights; :class:`UniformPruner` (the paper's random baseline) picks
channels uniformly and keeps the pre-trained weights. Both then train a new head on the
sub-network's frozen features and fine-tune for ``n_iterations`` SGD steps.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from ..channels.filter_space import input_channels
from ..data.checks import check_images
from ..meta.similarity import SharedClassSimilarity
from ..channels.filter_space import head_name
from ..channels.surgery import extract
from ..runtime.threads import uses_threads
from ..meta.voting import average_head, average_weights, sample_channels, uniform_channels, vote_counts
from .base import BasePruner
from .params import Interval, Options

__all__ = ["MetaVotePruner", "UniformPruner"]


class _OneShotPruner(BasePruner):
    """Shared ``fit``: choose a sub-network, initialise it, train a head, fine-tune."""

    def _initial_subnetwork(self, X, y, classes, space, rng):
        """Return ``(selection, pruned_state or None, head_prior or None)``: None keeps the
        pre-trained weights, and a head prior ``(weight, bias)`` is where the head starts."""
        raise NotImplementedError

    @uses_threads
    def fit(self, X, y):
        """Build and fine-tune the pruned network for the task given by ``X`` and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W)
            Preprocessed float images (or flattened rows with ``input_shape``).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self
        """
        run = self._begin_run(X, y)
        net, records = self._fine_tune(run.module, run.X, run.y, run.n_classes, run.n_steps,
                                       desc=type(self).__name__)
        return run.finish(net, records)

    def _begin_run(self, X, y, features=None) -> "_OneShotRun":
        """Checks, the sub-network, its initial weights and its head: everything before the first iteration."""
        return _OneShotRun(self, X, y)


class _OneShotRun:
    """One fit of a one-shot pruner between its phases (see ``_PruningRun`` of :mod:`.ifp`).

    The sub-network is built at its target size before training, so there are no events.
    """

    events = ()

    def __init__(self, pruner: _OneShotPruner, X, y):
        self.pruner = pruner
        self.start = time.perf_counter()
        self.X, self.y, self.classes, self.space = pruner._fit_common(X, y)
        self.n_classes = len(self.classes)
        space = self.space
        rng = check_random_state(pruner._seed_)
        labels = self.classes[self.y]
        self.selection, state, head_prior = pruner._initial_subnetwork(self.X, labels, self.classes, space, rng)
        module = extract(pruner._backbone(), self.selection, space)
        if state is not None:
            missing, unexpected = module.load_state_dict(state, strict=False)
            head_prefix = f"{head_name(space)}."
            if unexpected or any(not k.startswith(head_prefix) for k in missing):
                raise RuntimeError(f"initial weights do not fit the sub-network: missing {missing}, "
                                   f"unexpected {unexpected}")
        module = module.to(pruner.device).eval()
        if pruner.recalibrate_bn:  # the sub-network's channels see other inputs than in the donors' networks
            pruner._recalibrate(module, self.X)
        task_head = pruner._new_head(module, self.X, self.y, self.n_classes, prior=head_prior)
        task_head = task_head.to(pruner.device)
        module.set_submodule(head_name(module), task_head)
        self.module = module
        self.n_steps = pruner.n_iterations

    def finish(self, net, records):
        for record in records:
            record["phase"] = "finetune"
        return self.pruner._finish(net, self.selection, self.space, self.X, self.classes, records, self.start)


class UniformPruner(_OneShotPruner):
    """The random baseline of the MVP paper: uniformly sampled channels, pre-trained weights.

    Each group keeps ``max(1, round((1 - pruning_ratio) * n))`` channels drawn uniformly
    without replacement; the sub-network keeps the pre-trained weights, gets a new head
    trained on its frozen features, and is fine-tuned for ``n_iterations`` SGD steps.

    Parameters
    ----------
    backbone : torch.nn.Module
        Pre-trained torchvision-style ResNet; never modified.
    pruning_ratio : float, default=0.9
    n_iterations : int, default=100
        Fine-tuning SGD iterations.
    head_epochs, head_l2, lr, batch_size, momentum, weight_decay, score_batch_size,
    recalibrate_bn, input_shape, device, n_threads, callbacks, random_state, verbose
        As in :class:`IterativeFilterPruner`. ``lr`` defaults to 3e-2, chosen by the same
        measurement (``benchmarks/results/defaults/table.md``); the paper's 3e-4 is
        :func:`~metaprune.pruners.paper.paper_parameters`.

    Attributes
    ----------
    classes_, selection_, net_, n_params_, flops_, train_flops_, fit_time_, history_, filter_space_
        As in :class:`IterativeFilterPruner`.
    """

    def __init__(self, backbone=None, *, pruning_ratio=0.9, n_iterations=100, head_epochs=10, head_l2=1e-3,
                 lr=3e-2, batch_size=128, momentum=0.9, weight_decay=5e-4, score_batch_size=256,
                 recalibrate_bn=True, input_shape=None, device="cpu", n_threads="auto", callbacks=None,
                 random_state=None, verbose=0):
        self.backbone = backbone
        self.pruning_ratio = pruning_ratio
        self.n_iterations = n_iterations
        self.head_epochs = head_epochs
        self.head_l2 = head_l2
        self.lr = lr
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.score_batch_size = score_batch_size
        self.recalibrate_bn = recalibrate_bn
        self.input_shape = input_shape
        self.device = device
        self.n_threads = n_threads
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    def _initial_subnetwork(self, X, y, classes, space, rng):
        return uniform_channels(space.sizes, space.n_keep(self.pruning_ratio), random_state=rng,
                                units=space.units), None, None


class MetaVotePruner(_OneShotPruner):
    """Meta-Vote Pruning (Alg. 2 of the MVP paper): prune a new task by votes of similar tasks.

    ``fit(X, y)`` (1) scores every task of ``bank`` by ``similarity`` to the new task and
    takes the ``n_neighbors`` most similar; (2) in each channel group, samples
    ``n_keep`` channels without replacement from softmax(votes / temperature), where a
    channel's votes count the neighbours that kept it; (3) initialises every kept
    weight with its average over the neighbours whose pruned models contain it
    (pre-trained value where none does); (4) trains a new head on the sub-network's
    frozen features and fine-tunes for ``n_iterations`` SGD steps. Nothing is written
    to the bank.

    Parameters
    ----------
    bank : PrunedModelBank
        Pruned training tasks; shared (not copied) by clones and grid-search candidates.
    n_neighbors : int, default=10
        ``N``, the number of most similar bank tasks that vote.
    similarity : TaskSimilarity, default=SharedClassSimilarity()
        How tasks are compared (a clone is fitted on the bank).
    temperature : float, default=0.025
        ``tau`` of Eq. 1; small values pick the most-voted channels.
    pruning_ratio : float or None, default=None
        None keeps as many channels per group as the neighbours' pruned models do
        (their median), i.e. the ratio the bank's tasks were pruned to.
    init_channels : {"voted", "uniform"}, default="voted"
        How the kept channels are chosen: by the neighbours' votes (step 2, the method), or
        uniformly at random as :class:`UniformPruner` does (an ablation).
    init_weights : {"averaged", "pretrained"}, default="averaged"
        How the kept weights start: averaged over the neighbours (step 3, the method), or the
        pre-trained backbone's (an ablation). With ``"uniform"`` and ``"pretrained"`` the fit
        is :class:`UniformPruner`'s with the same ``random_state``; the two mixed settings
        tell how much of MVP's start comes from the channels and how much from the weights.
    init_head : {"trained", "neighbors"}, default="trained"
        How the head starts: trained from zero on the sub-network's frozen features (step 4,
        the method), or from the neighbours' heads for the classes they share with the new
        task, mapped into its channels (:func:`~metaprune.meta.voting.average_head`), and
        trained with its penalty centred there instead of at zero (beyond the paper; with
        ``head_epochs=0`` the neighbours' head is used as it is).
    n_iterations : int, default=100
        Fine-tuning SGD iterations.
    exclude : collection of str, optional
        Task ids that may not vote (e.g. the task itself, for held-out evaluation).
    exclude_shared_classes : bool, default=False
        Forbid every bank task that shares a class with the new task.
    head_epochs, head_l2, lr, batch_size, momentum, weight_decay, score_batch_size,
    recalibrate_bn, input_shape, device, n_threads, callbacks, random_state, verbose
        As in :class:`IterativeFilterPruner`. ``lr`` defaults to 3e-2, chosen by the same
        measurement (``benchmarks/results/defaults/table.md``); the paper's 3e-4 is
        :func:`~metaprune.pruners.paper.paper_parameters`.

    Attributes
    ----------
    neighbors_ : list of (str, float)
        The voting tasks and their similarity to the new task, most similar first.
    votes_ : dict of str to ndarray
        Vote count of every pre-trained channel, per group.
    classes_, selection_, net_, n_params_, flops_, train_flops_, fit_time_, history_, filter_space_
        As in :class:`IterativeFilterPruner`.

    Examples
    --------
    >>> mvp = MetaVotePruner(bank, n_neighbors=10).fit(X, y)  # doctest: +SKIP
    >>> mvp.score(X_test, y_test)  # doctest: +SKIP
    """

    _parameter_constraints = {
        **_OneShotPruner._parameter_constraints,
        "n_neighbors": Interval(int, 1, None, closed="left"),
        "temperature": Interval(float, 0, None, closed="neither"),
        "pruning_ratio": (Options(None), Interval(float, 0, 1, closed="neither")),
        "exclude_shared_classes": Options(True, False),
        "init_channels": Options("voted", "uniform"),
        "init_weights": Options("averaged", "pretrained"),
        "init_head": Options("trained", "neighbors"),
    }

    def __init__(self, bank=None, *, n_neighbors=10, similarity=None, temperature=0.025, pruning_ratio=None,
                 init_channels="voted", init_weights="averaged", init_head="trained", n_iterations=100,
                 exclude=None, exclude_shared_classes=False, head_epochs=10, head_l2=1e-3,
                 lr=3e-2, batch_size=128, momentum=0.9, weight_decay=5e-4, score_batch_size=256,
                 recalibrate_bn=True, input_shape=None, device="cpu", n_threads="auto", callbacks=None,
                 random_state=None, verbose=0):
        self.bank = bank
        self.n_neighbors = n_neighbors
        self.similarity = similarity
        self.temperature = temperature
        self.pruning_ratio = pruning_ratio
        self.init_channels = init_channels
        self.init_weights = init_weights
        self.init_head = init_head
        self.n_iterations = n_iterations
        self.exclude = exclude
        self.exclude_shared_classes = exclude_shared_classes
        self.head_epochs = head_epochs
        self.head_l2 = head_l2
        self.lr = lr
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.score_batch_size = score_batch_size
        self.recalibrate_bn = recalibrate_bn
        self.input_shape = input_shape
        self.device = device
        self.n_threads = n_threads
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    def _backbone(self):
        if self.bank is None:
            raise ValueError("MetaVotePruner needs a PrunedModelBank (bank=None given)")
        return self.bank.backbone

    def _validate_fit_input(self, X, y):
        """The checks of every pruner, and that the images are the kind the bank was built on."""
        backbone = self._backbone()
        images = check_images(X, None, self.input_shape, min_samples=2)
        expected = self.bank.input_shape
        where = f"the bank {self.bank.path}" if self.bank.path else "the bank (in memory)"
        if images.shape[1] != input_channels(backbone) or (expected is not None and images.shape[1:] != expected):
            built_on = f"images of shape {expected}" if expected is not None else \
                f"{input_channels(backbone)}-channel images"
            raise ValueError(f"X has images of shape {images.shape[1:]} but {where} was built on {built_on}; "
                             f"preprocess the task's images as the bank's tasks were, or use a bank built "
                             f"on such images")
        return super()._validate_fit_input(images, y)

    def _candidates(self, classes) -> np.ndarray:
        """Boolean mask over ``bank.task_ids`` of the tasks allowed to vote."""
        ids = list(self.bank.task_ids)
        allowed = np.ones(len(ids), dtype=bool)
        if self.exclude is not None:
            excluded = {self.exclude} if isinstance(self.exclude, str) else set(self.exclude)
            allowed &= np.array([t not in excluded for t in ids], dtype=bool)
        if self.exclude_shared_classes:
            bank_classes, incidence = self.bank.class_incidence()
            allowed &= ~incidence[:, np.isin(bank_classes, classes)].any(axis=1)
        return allowed

    def _neighbours(self, X, y, classes):
        if len(self.bank) == 0:
            raise ValueError("the bank is empty: add pruned training tasks before fitting MetaVotePruner")
        allowed = self._candidates(classes)
        if self.n_neighbors > allowed.sum():
            raise ValueError(f"n_neighbors={self.n_neighbors} but only {int(allowed.sum())} bank tasks may vote "
                             f"(bank size {len(self.bank)})")
        similarity = clone(self.similarity if self.similarity is not None else SharedClassSimilarity())
        scores = np.asarray(similarity.fit(self.bank).similarities(X, y), dtype=np.float64)
        scores = np.where(allowed, scores, -np.inf)
        order = np.argsort(-scores, kind="stable")[: self.n_neighbors]  # ties: bank order
        ids = list(self.bank.task_ids)
        return [(ids[i], float(scores[i])) for i in order]

    def _initial_subnetwork(self, X, y, classes, space, rng):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        self.neighbors_ = self._neighbours(X, y, classes)
        ids = [task_id for task_id, _ in self.neighbors_]
        needs_states = self.init_weights == "averaged" or self.init_head == "neighbors"
        if needs_states:
            neighbours = self.bank.pruned_tasks(ids)  # (selection, pruned state) per neighbour, one read
            selections = [selection for selection, _ in neighbours]
        else:  # the neighbours' weights are not needed: read their selections only
            neighbours, selections = None, list(self.bank.selections(ids))
        self.votes_ = vote_counts(selections, space.sizes)
        if self.pruning_ratio is None:
            units = space.units
            n_keep = {g: units[g] * int(np.median([len(s[g]) // units[g] for s in selections])) for g in space.names}
        elif 0.0 < self.pruning_ratio < 1.0:
            n_keep = space.n_keep(self.pruning_ratio)
        else:
            raise ValueError(f"pruning_ratio must be None or in (0, 1), got {self.pruning_ratio}")
        if self.init_channels == "uniform":
            target = uniform_channels(space.sizes, n_keep, random_state=rng, units=space.units)
        else:
            target = sample_channels(self.votes_, n_keep, self.temperature, random_state=rng, units=space.units)
        head_prior = None
        if self.init_head == "neighbors":
            labels = [self.bank.record(task_id, weights=False).classes for task_id in ids]
            weight, bias, _ = average_head(neighbours, labels, classes, target, space)
            head_prior = (weight, bias)
        if self.init_weights == "pretrained":
            return target, None, head_prior
        head = _head_modules(space)
        fallback = {k: v for k, v in self._backbone().state_dict().items() if k.rpartition(".")[0] not in head}
        return target, average_weights(neighbours, target, space, fallback), head_prior


def _head_modules(space) -> set:
    """The task head's module name (as a set), whose tensors are never averaged."""
    return {head_name(space)}
