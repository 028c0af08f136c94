"""The pruned-model bank: one pre-trained backbone and the pruning results of many tasks.

:class:`PrunedModelBank` stores, per training task, the selection of kept channels, the
pruned weights, the head, class prototypes, metrics and pruning configuration in one
SQLite file (or in memory), builds itself in parallel through joblib (locally or on a
Dask cluster), and answers the vectorised queries meta-vote pruning needs.

Modules, in the order data flows through them: ``_codec`` (safetensors / JSON encoding),
``_records`` (fitted pruner <-> stored task), ``_build`` (parallel pruning), ``_builders``
(concurrent builds: identities, liveness, heartbeat), ``_sql`` (SQL helpers), ``_schema``
(the file's tables and rows), ``_storage`` (transactions, reads, writes, integrity),
``_storage_builds`` (the SQL of concurrent builds: designs, builders, claims), ``_writes``
(adding and building tasks), ``_queries`` (the read side), ``_bank`` (the public class).
"""

from ._bank import PrunedModelBank
from ._builders import BuildSummary
from ._records import TaskRecord

__all__ = ["PrunedModelBank", "BuildSummary", "TaskRecord"]
