"""Thread counts chosen per call and restored afterwards (metaprune.runtime.threads)."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from metaprune import IterativeFilterPruner, UniformPruner
from metaprune.bank._build import _share_cores
from metaprune.cli.parser import build_parser
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.runtime.threads import available_cores, idle_cores, resolve_threads, torch_threads


class _RecordThreads(Callback):
    def initialize(self):
        self.seen_ = []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        self.seen_.append(torch.get_num_threads())


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_resolve_threads(restore_threads):
    torch.set_num_threads(available_cores())
    assert 1 <= resolve_threads("auto") <= available_cores()
    torch.set_num_threads(1)
    assert resolve_threads("auto") == 1  # never more than the caller's own setting
    assert 0.0 <= idle_cores() <= available_cores()
    assert resolve_threads(3) == 3 and resolve_threads(None) is None
    for bad in (0, -1, 1.5, True, "two", "AUTO"):
        with pytest.raises(ValueError, match="n_threads"):
            resolve_threads(bad)


def test_torch_threads_sets_and_restores_even_on_error(restore_threads):
    torch.set_num_threads(2)
    with torch_threads(1) as used:
        assert used == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    with torch_threads(None) as used:
        assert used == 2


@pytest.mark.parametrize("estimator", [IterativeFilterPruner, UniformPruner])
def test_fit_and_predict_run_with_the_estimators_threads_and_leave_the_callers(estimator, restore_threads):
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(24, 3, 8, 8)).astype(np.float32), np.repeat([0, 1], 12)
    record = _RecordThreads()
    kwargs = dict(prune_every=2) if estimator is IterativeFilterPruner else {}
    model = estimator(cifar_resnet18(width=4), pruning_ratio=0.5, n_iterations=3, batch_size=8, n_threads=1,
                      callbacks=[record], random_state=0, **kwargs).fit(X, y)
    assert record.seen_ == [1] * model.n_iter_ and model.n_iter_ >= 3
    assert torch.get_num_threads() == 2
    model.predict(X)
    assert torch.get_num_threads() == 2


def test_parallel_bank_workers_share_the_cores():
    pruner = IterativeFilterPruner(cifar_resnet18(width=4))
    assert _share_cores(pruner, 2).n_threads == max(1, available_cores() // 2)
    assert _share_cores(pruner, 1) is pruner and _share_cores(pruner, None) is pruner
    fixed = IterativeFilterPruner(cifar_resnet18(width=4), n_threads=2)
    assert _share_cores(fixed, 2) is fixed
    assert _share_cores(fixed, 2, n_threads=1).n_threads == 1  # the build's setting wins
    assert _share_cores(fixed, 2, n_threads="auto").n_threads == max(1, available_cores() // 2)
    with pytest.raises(ValueError, match="n_threads"):
        _share_cores(fixed, 2, n_threads=0)


def test_cli_threads_option():
    parser = build_parser()
    base = ["evaluate", "model.safetensors", "--data", "digits"]
    assert parser.parse_args(base).threads == "auto"
    assert parser.parse_args([*base, "--threads", "1"]).threads == 1
    for bad in ("0", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--threads", bad])
