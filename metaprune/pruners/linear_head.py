"""The task head: a linear classifier trained to its optimum on frozen features."""

from __future__ import annotations

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from .engine import fit_net

__all__ = ["fit_linear_head"]


class _PenalisedNet(NeuralNetClassifier):
    """Cross-entropy plus ``l2 / 2 * ||W - centre||^2`` on the weight (not the bias); with
    ``centre`` None (zero) this is scikit-learn's ``LogisticRegression`` with
    ``C = 1 / (l2 * n_samples)``."""

    def __init__(self, *args, l2=0.0, centre=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2 = l2
        self.centre = centre

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if self.l2:
            weight = self.module_.weight
            if self.centre is not None:
                weight = weight - self.centre.to(weight.device)
            loss = loss + 0.5 * self.l2 * weight.pow(2).sum()
        return loss


def fit_linear_head(features: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-3,
                    max_epochs: int = 10, prior=None, device="cpu") -> nn.Linear:
    """Fit a linear head on frozen features to the optimum of penalised cross-entropy.

    Full-batch L-BFGS (strong Wolfe line search) through skorch: each epoch is one
    optimizer step of up to 20 L-BFGS iterations, so ``max_epochs`` = 10 allows 200. The
    problem is convex, so this reaches the same optimum as scikit-learn's
    ``LogisticRegression(C=1 / (l2 * n_samples))``, deterministically (zero init).

    With a ``prior`` the head starts from the prior's weight and bias and the penalty pulls
    the weight towards the prior's instead of towards zero (a Gaussian prior centred there):
    the optimum is then the prior where the data say nothing, and the data's where they
    say much.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Encoded labels in ``[0, n_classes)``.
    n_classes : int
    l2 : float
        Weight penalty on the mean loss.
    max_epochs : int
        L-BFGS steps (the paper's K head epochs). With 0 the head is the prior's (zero
        without one).
    prior : (weight, bias) of array-likes, shapes (n_classes, n_features) and (n_classes,), optional
        Starting point and centre of the penalty, e.g. the neighbours' heads
        (:func:`metaprune.meta.voting.average_head`).
    device : str or torch.device

    Returns
    -------
    torch.nn.Linear
        The trained head, on CPU.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    head = nn.Linear(features.shape[1], n_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    centre = None
    if prior is not None:
        weight, bias = (torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in prior)
        if weight.shape != head.weight.shape or bias.shape != head.bias.shape:
            raise ValueError(f"prior shapes {tuple(weight.shape)}, {tuple(bias.shape)} do not fit a head of "
                             f"{n_classes} classes on {features.shape[1]} features")
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        centre = weight
    if max_epochs > 0:
        net = _PenalisedNet(
            module=head, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.LBFGS, lr=1.0,
            optimizer__max_iter=20, optimizer__line_search_fn="strong_wolfe", optimizer__history_size=20,
            batch_size=-1, max_epochs=max_epochs, train_split=None, classes=list(range(n_classes)),
            device=device, verbose=0, l2=l2, centre=centre,
        )
        fit_net(net, features, np.asarray(y, dtype=np.int64))  # Ctrl-C propagates
        head = net.module_
    return head.cpu()
