"""Meta-pruning: which bank tasks are nearest to a new task, and how their votes build its network.

- :mod:`~metaprune.meta.similarity` -- task similarity (shared classes; class prototypes matched
  by the Hungarian algorithm).
- :mod:`~metaprune.meta.voting` -- vote counts, channel sampling and weight averaging.
"""
