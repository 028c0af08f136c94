"""metaprune: prune one pre-trained network for many small tasks by voting among similar tasks.

Implements "Vote for Nearest Neighbors Meta-Pruning of Self-Supervised Networks"
(Meta-Vote Pruning) as scikit-learn-style estimators on skorch-wrapped torchvision ResNets.
"""

from .bank import PrunedModelBank
from .filter_space import ChannelGroup, FilterSpace
from .io import PrunedModel, load_pruned
from .pruners import IterativeFilterPruner, MetaVotePruner, UniformPruner
from .selection import Selection
from .similarity import PrototypeSimilarity, SharedClassSimilarity, TaskSimilarity
from .surgery import extract

__version__ = "0.1.0.dev0"

__all__ = ["ChannelGroup", "FilterSpace", "IterativeFilterPruner", "MetaVotePruner", "PrototypeSimilarity",
           "PrunedModel", "PrunedModelBank", "Selection", "SharedClassSimilarity", "TaskSimilarity",
           "UniformPruner", "extract", "load_pruned", "__version__"]
