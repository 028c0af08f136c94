"""What every pruner shares: input checks, the head, skorch fine-tuning, prediction, saving."""

from __future__ import annotations

import copy
import math
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..data.checks import as_array, check_images, check_labels
from ..data.batches import standard_format_
from .batchnorm import recalibrate_batchnorm
from ..channels.complexity import count_flops, count_parameters
from ..backbone.penultimate import penultimate_features
from ..channels.filter_space import FilterSpace, input_channels
from .linear_head import fit_linear_head
from ..channels.pruned_model import save_pruned
from ..backbone.architectures import architecture_of
from ..backbone.resnet import fingerprint
from ..runtime.threads import uses_threads
from .engine import fit_for_iterations
from .params import Interval, Options, check_parameters

__all__ = ["BasePruner"]


def _progress(total, desc, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


class BasePruner(ClassifierMixin, BaseEstimator):
    """Base class of the pruning classifiers (not for direct use).

    Subclasses implement ``_prune(module, X, y, space)`` which turns a deep copy of the
    pre-trained backbone (with a trained task head as ``fc``) into the fitted, pruned
    network, returning ``(net, selection, records)``.

    ``_parameter_constraints`` declares the allowed values of the parameters every pruner
    has; subclasses extend it with their own (see :mod:`metaprune.pruners.params`).
    """

    _parameter_constraints = {
        "pruning_ratio": Interval(float, 0, 1, closed="neither"),
        "n_iterations": Interval(int, 0, None, closed="left"),
        "head_epochs": Interval(int, 0, None, closed="left"),
        "head_l2": Interval(float, 0, None, closed="left"),
        "lr": Interval(float, 0, None, closed="neither"),
        "batch_size": Interval(int, 1, None, closed="left"),
        "momentum": Interval(float, 0, 1, closed="left"),
        "weight_decay": Interval(float, 0, None, closed="left"),
        "score_batch_size": Interval(int, 1, None, closed="left"),
        "recalibrate_bn": Options(True, False),
    }

    def _backbone(self) -> nn.Module:
        """The pre-trained network this estimator prunes."""
        return self.backbone

    def _validate_params(self):
        """Check every parameter declared in ``_parameter_constraints``; a ValueError names the first bad one.

        Overrides scikit-learn's hook of the same name, which reads the same attribute with its
        own (private) constraint types.
        """
        check_parameters({name: getattr(self, name) for name in self._parameter_constraints},
                         self._parameter_constraints)

    def _check_params(self):
        """All checks of the parameters, before any work: the declared ranges, then the backbone."""
        self._validate_params()
        backbone = self._backbone()
        if backbone is None or not isinstance(backbone, nn.Module):
            raise ValueError(f"backbone must be a pre-trained torch.nn.Module (a torchvision ResNet or any traceable CNN), "
                             f"got {type(backbone).__name__}")

    def _validate_fit_input(self, X, y):
        in_channels = input_channels(self._backbone())
        X = check_images(X, in_channels, self.input_shape, min_samples=2)
        classes, y_enc = check_labels(y, len(X))
        return X, y_enc, classes

    def _seed(self) -> int:
        """One integer seed for this fit, from ``random_state`` (int, RandomState or None)."""
        if isinstance(self.random_state, (int, np.integer)):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31))

    def _new_head(self, module: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int,
                  features=None, prior=None) -> nn.Linear:
        """Train a task head for ``module`` on its frozen features (computed once).

        ``features`` are those features when the caller has them already (the pre-trained
        network's features of images that several tasks share); their FLOPs count the same.
        ``prior`` is the head's starting point and the centre of its penalty
        (:func:`~metaprune.pruners.linear_head.fit_linear_head`).
        """
        if features is None:
            features = penultimate_features(module, X, batch_size=max(self.batch_size, 256), device=self.device)
        self.train_flops_ += self._forward_flops(module, X) * len(X)
        return fit_linear_head(features, y, n_classes, l2=self.head_l2, max_epochs=self.head_epochs, prior=prior,
                               device=self.device)

    def _forward_flops(self, module, X) -> int:
        """FLOPs of one forward pass, counted once per architecture within a ``fit``.

        The count depends only on the parameter shapes, so the head, recalibration and
        final accounting of the same (sub-)network share one count.
        """
        key = (tuple(X.shape[1:]), tuple(tuple(p.shape) for p in module.parameters()))
        if key not in self._flops_cache:
            self._flops_cache[key] = count_flops(module, X.shape[1:])
        return self._flops_cache[key]

    def _prepared_backbone(self) -> nn.Module:
        module = standard_format_(copy.deepcopy(self._backbone()).to(self.device))
        module.eval()
        return module

    def _fine_tune(self, module, X, y, n_classes, n_steps, before_step=None, desc="fine-tune"):
        """Run ``n_steps`` SGD iterations through skorch and account their FLOPs.

        ``before_step(net, j)`` may reshape the network; it returns True when it did.
        """
        progress = _progress(n_steps, desc, self.verbose)
        step_images = min(self.batch_size, len(X))
        forward = {"flops": None}

        def account(net, iteration):
            changed = before_step(net, iteration) if before_step is not None else False
            if changed or forward["flops"] is None:
                forward["flops"] = self._forward_flops(net.module_, X)
            self.train_flops_ += 3 * forward["flops"] * step_images  # forward + backward ~ 3x forward

        try:
            net, records = fit_for_iterations(
                module, X, y, n_classes, n_steps, lr=self.lr, momentum=self.momentum,
                weight_decay=self.weight_decay, batch_size=self.batch_size, device=self.device,
                seed=self._seed_, before_step=account, callbacks=list(self.callbacks or ()),
                progress=progress)
        finally:
            if progress is not None:
                progress.close()
        return net, records

    def _recalibrate(self, module, X):
        recalibrate_batchnorm(module, X, batch_size=self.score_batch_size, device=self.device)
        self.train_flops_ += self._forward_flops(module, X) * len(X)

    def _finish(self, net, selection, space, X, classes, records, start):
        if self.recalibrate_bn:
            self._recalibrate(net.module_, X)
        net.module_.eval()
        self.net_ = net
        self.selection_ = selection
        self.filter_space_ = space
        self.classes_ = classes
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        module = net.module_
        self.n_params_ = count_parameters(module)
        self.flops_ = self._forward_flops(module, X)
        self.history_ = records
        self.n_iter_ = len(records)
        self.fit_time_ = time.perf_counter() - start
        return self

    # -- public API -------------------------------------------------------------
    def _fitted_images(self, X):
        check_is_fitted(self, "net_")
        X = as_array(X)
        if X.ndim == 2 and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        X = check_images(X, self.input_shape_[0], self.input_shape)
        if X.shape[1:] != self.input_shape_:
            raise ValueError(f"X has images of shape {X.shape[1:]}, the network was fitted on {self.input_shape_}")
        return X

    @uses_threads
    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        X = self._fitted_images(X)
        return self.net_.predict_proba(X)

    def predict(self, X):
        """Predicted class labels (the labels ``fit`` saw, ints or strings)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def save(self, path, metadata: dict | None = None) -> None:
        """Save the fitted pruned network without pickle (safetensors + JSON architecture).

        Reload it with :func:`metaprune.load_pruned`.
        """
        check_is_fitted(self, "net_")
        info = {"estimator": type(self).__name__, "fit_time": self.fit_time_, "n_iter": self.n_iter_}
        info.update(metadata or {})
        save_pruned(path, self.net_.module_, self.selection_, self.classes_, architecture_of(self._backbone()),
                    self.input_shape_, info)

    def _fit_common(self, X, y):
        """Checks and set-up shared by every ``fit``; returns ``(X, y, classes, space, module)``."""
        self._check_params()
        X, y, classes = self._validate_fit_input(X, y)
        self._seed_ = self._seed()
        self.train_flops_ = 0
        self._flops_cache = {}
        self.backbone_fingerprint_ = fingerprint(self._backbone())
        space = FilterSpace.from_model(self._backbone(), input_shape=X.shape[1:])
        return X, y, classes, space

    @staticmethod
    def _epoch_steps(n_samples, batch_size):
        return int(math.ceil(n_samples / min(batch_size, n_samples)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
