"""What each pre-training method optimises: its heads (projector, predictor) and its loss.

An *objective* is a small module that owns a method's heads and turns the backbone's
penultimate features of the augmented views into a loss; the training loop
(:mod:`~metaprune.backbone.pretrain.loop`) is the same for all of them:

- :class:`SimSiamObjective` -- SimSiam (Chen & He, 2021): 3-layer projector whose last
  BatchNorm has no affine parameters (the paper's CIFAR recipe), bottleneck predictor,
  symmetric negative cosine loss with stop-gradient on the target branch;
- :class:`SimCLRObjective` -- SimCLR NT-Xent loss, offered because it converges faster
  than SimSiam in short CPU budgets (see the checkpoint cards);
- :class:`SupervisedObjective` -- cross-entropy through the backbone's own ``fc``.

Each objective has ``n_views`` (augmented views per image) and ``fixed_lr_modules()``
(heads trained at the constant base learning rate instead of the schedule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...channels.filter_space import head_name

__all__ = ["negative_cosine_similarity", "nt_xent_loss", "SimSiamObjective", "SimCLRObjective",
           "SupervisedObjective"]


def negative_cosine_similarity(p, z):
    """SimSiam's ``D(p, z) = -cos(p, stopgrad(z))``, averaged over the batch.

    No gradient flows into ``z`` (the target branch).

    Parameters
    ----------
    p, z : torch.Tensor of shape (N, D)
        Predictions and targets.

    Returns
    -------
    torch.Tensor
        Scalar loss in ``[-1, 1]``.
    """
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def nt_xent_loss(z1, z2, temperature=0.5):
    """SimCLR's normalised temperature-scaled cross-entropy over ``2N`` views.

    Parameters
    ----------
    z1, z2 : torch.Tensor of shape (N, D)
        Projections of the two views; row ``i`` of each comes from the same image.
    temperature : float, default 0.5

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class SimSiamObjective(nn.Module):
    """SimSiam heads and loss.

    Projector: ``Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN(affine=False)`` (hidden and output
    width ``proj_dim``); predictor: ``Linear-BN-ReLU-Linear`` with bottleneck ``pred_dim``.
    Loss: ``D(p1, z2)/2 + D(p2, z1)/2`` with stop-gradient on ``z``.

    Parameters
    ----------
    feat_dim : int
        Width of the backbone's penultimate features.
    proj_dim : int
        Projector width.
    pred_dim : int
        Predictor bottleneck.
    """

    n_views = 2

    def __init__(self, feat_dim, proj_dim, pred_dim):
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, proj_dim),
        )

    def fixed_lr_modules(self):
        """The predictor: SimSiam trains it at the constant base learning rate."""
        return [self.predictor]

    def forward(self, feats, y=None, backbone=None):
        """Symmetric negative cosine loss of the two views' features ``feats``."""
        f1, f2 = feats
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return 0.5 * negative_cosine_similarity(p1, z2) + 0.5 * negative_cosine_similarity(p2, z1)


class SimCLRObjective(nn.Module):
    """SimCLR heads and loss: projector ``Linear-BN-ReLU-Linear`` to ``out_dim``, NT-Xent.

    Parameters
    ----------
    feat_dim : int
        Width of the backbone's penultimate features.
    proj_dim : int
        Projector hidden width.
    out_dim : int, default 128
    temperature : float, default 0.5
    """

    n_views = 2

    def __init__(self, feat_dim, proj_dim, out_dim=128, temperature=0.5):
        super().__init__()
        self.temperature = temperature
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, out_dim),
        )

    def fixed_lr_modules(self):
        """None: every head follows the schedule."""
        return []

    def forward(self, feats, y=None, backbone=None):
        """NT-Xent loss of the two views' features ``feats``."""
        f1, f2 = feats
        return nt_xent_loss(self.projector(f1), self.projector(f2), self.temperature)


class SupervisedObjective(nn.Module):
    """Cross-entropy through the backbone's own ``fc`` (one augmented view)."""

    n_views = 1

    def fixed_lr_modules(self):
        """None: the backbone and its ``fc`` follow the schedule."""
        return []

    def forward(self, feats, y=None, backbone=None):
        """Cross-entropy of the backbone's head on the view's features against labels ``y``."""
        return F.cross_entropy(backbone.get_submodule(head_name(backbone))(feats[0]), y)
