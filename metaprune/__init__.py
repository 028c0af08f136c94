"""metaprune: prune one pre-trained network for many small tasks by voting among similar tasks.

Implements "Vote for Nearest Neighbors Meta-Pruning of Self-Supervised Networks"
(Meta-Vote Pruning) as scikit-learn-style estimators on skorch-wrapped torchvision ResNets.

The subpackages follow the data flow: :mod:`~metaprune.data` (images in, tasks) ->
:mod:`~metaprune.backbone` (the pre-trained network) -> :mod:`~metaprune.channels` (the filter
space and pruned networks) -> :mod:`~metaprune.pruners` (the estimators and their training
engine) -> :mod:`~metaprune.bank` (pruned training tasks) -> :mod:`~metaprune.meta` (similarity
and votes), with :mod:`~metaprune.analysis`, :mod:`~metaprune.export`, :mod:`~metaprune.demo`,
:mod:`~metaprune.cli` and :mod:`~metaprune.runtime` around them.
"""

from ._aliases import install as _install_aliases

_install_aliases()  # metaprune.models, metaprune.tasks... (the flat layout of 0.1) still import

from .backbone.architectures import (ConstructorSpec, TorchvisionSpec, attach_architecture,  # noqa: E402
                                     torchvision_backbone)
from .bank import PrunedModelBank  # noqa: E402
from .channels.filter_space import ChannelGroup, FilterSpace  # noqa: E402
from .channels.pruned_model import PrunedModel, load_pruned  # noqa: E402
from .channels.selection import Selection  # noqa: E402
from .channels.surgery import extract  # noqa: E402
from .meta.similarity import PrototypeSimilarity, SharedClassSimilarity, TaskSimilarity  # noqa: E402
from .pruners import IterativeFilterPruner, MetaVotePruner, UniformPruner, fit_many, paper_parameters  # noqa: E402
from ._version import __version__  # noqa: E402

__all__ = ["ChannelGroup", "ConstructorSpec", "FilterSpace", "TorchvisionSpec", "attach_architecture",
           "torchvision_backbone", "IterativeFilterPruner", "MetaVotePruner", "PrototypeSimilarity",
           "PrunedModel", "PrunedModelBank", "Selection", "SharedClassSimilarity", "TaskSimilarity",
           "UniformPruner", "extract", "fit_many", "load_pruned", "paper_parameters", "__version__"]
