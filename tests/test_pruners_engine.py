"""The skorch training engine: exactly ``n_steps`` iterations, a cosine learning rate per step,
seeded reshuffled mini-batches, and Ctrl-C that is not swallowed."""

import copy
import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from torch import nn

from metaprune.backbone.resnet import cifar_resnet18
from metaprune.pruners.engine import BatchDataset, IterationSchedule, fit_for_iterations, fit_net, make_net
from metaprune.pruners.schedule import cosine_learning_rate

N, N_CLASSES = 12, 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, 1, 8, 8)).astype(np.float32)
Y = np.arange(N) % N_CLASSES
TRAIN = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=5, device="cpu")


def tiny_module(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, N_CLASSES))


def indexed_images():
    """Images whose every pixel is the image's index, so a batch names the samples it holds."""
    return np.broadcast_to(np.arange(N, dtype=np.float32)[:, None, None, None], (N, 1, 8, 8)).copy()


class Recorder(Callback):
    """Records, for each training batch, the sample indices it holds and the learning rate in use."""

    def initialize(self):
        self.batches_, self.lrs_ = [], []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            self.batches_.append(batch[0][:, 0, 0, 0].long().tolist())

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if training:
            self.lrs_.append([group["lr"] for group in net.optimizer_.param_groups])


class Raise(Callback):
    """Raises ``error`` at the end of training step ``at``."""

    def __init__(self, error, at):
        self.error, self.at = error, at

    def initialize(self):
        self.steps_ = 0
        return self

    def on_batch_end(self, net, training=None, **kwargs):
        if training:
            self.steps_ += 1
            if self.steps_ == self.at:
                raise self.error


class NoEpochs(Callback):
    """Stops training before it starts, as a callback may (skorch then runs zero epochs)."""

    def on_train_begin(self, net, **kwargs):
        net.max_epochs = 0


def weights(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


@pytest.mark.parametrize("n_steps", [1, 2, 7])
def test_exactly_n_steps_records_with_iterations_0_to_n_minus_1(n_steps):
    net, records = fit_for_iterations(tiny_module(), X, Y, N_CLASSES, n_steps, seed=0, **TRAIN)
    assert [r["iteration"] for r in records] == list(range(n_steps))
    assert all(isinstance(r["loss"], float) and np.isfinite(r["loss"]) for r in records)
    assert net.initialized_


def test_learning_rates_follow_the_cosine_schedule_and_reach_the_optimizer():
    n_steps, recorder = 6, Recorder()
    _, records = fit_for_iterations(tiny_module(), X, Y, N_CLASSES, n_steps, seed=0, callbacks=[recorder],
                                    **TRAIN)
    expected = [cosine_learning_rate(TRAIN["lr"], j, n_steps) for j in range(n_steps)]
    assert [r["lr"] for r in records] == expected
    assert expected[0] == TRAIN["lr"] and expected[3] == pytest.approx(TRAIN["lr"] / 2)
    assert recorder.lrs_ == [[lr] for lr in expected]  # the value the optimizer stepped with


def test_before_step_runs_once_before_each_step_with_its_index():
    calls = []

    def before_step(net, iteration):
        calls.append((iteration, len(dict(net.callbacks_)["iteration_schedule"].records_)))

    n_steps = 5
    net, _ = fit_for_iterations(tiny_module(), X, Y, N_CLASSES, n_steps, seed=0, before_step=before_step,
                                **TRAIN)
    assert calls == [(j, j) for j in range(n_steps)]  # step j has not been recorded yet when it is called
    schedule = dict(net.callbacks_)["iteration_schedule"]
    assert schedule.before_step is None and schedule.progress is None
    pickle.dumps(net)  # the closure was dropped, so the fitted net pickles


def test_keyboard_interrupt_in_a_callback_propagates():
    """skorch's own ``fit`` would catch it and return a half-trained net as if fitted."""
    with pytest.raises(KeyboardInterrupt):
        fit_for_iterations(tiny_module(), X, Y, N_CLASSES, 6, seed=0,
                           callbacks=[Raise(KeyboardInterrupt(), at=3)], **TRAIN)


def test_keyboard_interrupt_in_before_step_propagates_and_drops_the_hook():
    seen = []

    def before_step(net, iteration):
        seen.append(net)
        if iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_for_iterations(tiny_module(), X, Y, N_CLASSES, 6, seed=0, before_step=before_step, **TRAIN)
    assert dict(seen[0].callbacks_)["iteration_schedule"].before_step is None


def test_fit_net_lets_keyboard_interrupt_through_where_skorch_fit_swallows_it():
    def net_with(callback):
        return make_net(tiny_module(), N_CLASSES, lr=0.1, momentum=0.0, weight_decay=0.0, batch_size=4,
                        device="cpu", callbacks=[callback])

    net_with(Raise(KeyboardInterrupt(), at=1)).fit(X, Y)  # skorch: no error, the net looks fitted
    with pytest.raises(KeyboardInterrupt):
        fit_net(net_with(Raise(KeyboardInterrupt(), at=1)), X, Y)


def test_a_callback_that_stops_training_early_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="training stopped after 0 of 4 iterations"):
        fit_for_iterations(tiny_module(), X, Y, N_CLASSES, 4, seed=0, callbacks=[NoEpochs()], **TRAIN)


def test_same_seed_gives_bit_identical_weights_another_seed_different_ones():
    module = cifar_resnet18(width=2, in_channels=1, num_classes=N_CLASSES)

    def train(seed):
        net, records = fit_for_iterations(copy.deepcopy(module), X, Y, N_CLASSES, 4, seed=seed, **TRAIN)
        return weights(net.module_), [r["loss"] for r in records]

    (first, loss_a), (again, loss_b), (other, _) = train(3), train(3), train(4)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first) and loss_a == loss_b
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert not all(torch.equal(first[k], v) for k, v in weights(module).items())  # training moved them


@pytest.mark.parametrize("batch_size, n_steps", [(5, 7), (4, 3), (12, 2), (50, 2)])
def test_mini_batches_are_reshuffled_passes_over_the_data(batch_size, n_steps):
    recorder = Recorder()
    fit_for_iterations(tiny_module(), indexed_images(), Y, N_CLASSES, n_steps, seed=1, callbacks=[recorder],
                       **{**TRAIN, "batch_size": batch_size})
    size = min(batch_size, N)  # a batch never exceeds the data
    assert [len(b) for b in recorder.batches_] == [size] * n_steps
    stream = [i for batch in recorder.batches_ for i in batch]
    passes = [stream[start:start + N] for start in range(0, len(stream), N)]
    for p in passes:  # each pass holds every sample once (the last one a part of them)
        assert len(set(p)) == len(p) and set(p) <= set(range(N))
    full = [p for p in passes if len(p) == N]
    assert len(full) == len(stream) // N
    if len(full) >= 2:
        assert full[0] != full[1]  # reshuffled, not repeated


def test_the_sampler_depends_on_the_seed_only():
    def batches(seed, module_seed):
        recorder = Recorder()
        fit_for_iterations(tiny_module(module_seed), indexed_images(), Y, N_CLASSES, 5, seed=seed,
                           callbacks=[recorder], **TRAIN)
        return recorder.batches_

    assert batches(2, 0) == batches(2, 1)
    assert batches(2, 0) != batches(3, 0)


def test_zero_steps_returns_an_initialised_untrained_net():
    module = tiny_module()
    before = weights(module)
    net, records = fit_for_iterations(module, X, Y, N_CLASSES, 0, seed=0, **TRAIN)
    assert records == [] and net.initialized_
    after = weights(net.module_)
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert net.predict(X).shape == (N,)


def test_batch_dataset_gathers_whole_batches_in_standard_layout():
    Xf = np.asfortranarray(X.astype(np.float64))
    data = BatchDataset(Xf, Y)
    assert len(data) == N
    images, labels = data[[3, 0, 7]]
    assert images.dtype == torch.float32 and images.is_contiguous() and images.shape == (3, 1, 8, 8)
    assert torch.equal(images, torch.from_numpy(X[[3, 0, 7]]))
    assert labels.tolist() == Y[[3, 0, 7]].tolist()


def test_iteration_schedule_ignores_evaluation_batches():
    schedule = IterationSchedule(0.1, 4).initialize()
    schedule.on_batch_begin(None, training=False)
    schedule.on_batch_end(None, training=False, loss=torch.tensor(1.0))
    assert schedule.iteration_ == 0 and schedule.records_ == []


def test_make_net_trains_one_epoch_without_a_validation_split():
    net = make_net(tiny_module(), N_CLASSES, lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=4,
                   device="cpu")
    assert net.max_epochs == 1 and net.train_split is None and net.verbose == 0
    assert list(net.classes) == list(range(N_CLASSES))
    net.initialize()
    group = net.optimizer_.param_groups[0]
    assert isinstance(net.optimizer_, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.9, 1e-4)
