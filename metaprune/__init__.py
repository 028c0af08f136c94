"""metaprune: prune one pre-trained network for many small tasks by voting among similar tasks."""

__version__ = "0.1.0.dev0"
