"""Inputs of any memory layout and dtype: the process survives and predictions do not change.

The fits run in a subprocess (``tests/_layout_worker.py``): the bug this guards against is a
heap overrun inside torch (see ``docs/decisions.md``, "Input layout"), which would kill a
test run rather than fail a test.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metaprune.data.batches import forward_batches, image_array, image_tensor, standard_format_, training_memory_format
from metaprune.backbone.resnet import cifar_resnet18

WORKER = Path(__file__).with_name("_layout_worker.py")
N_EXAMPLES = 40


def test_every_layout_and_dtype_fits_and_predicts_identically_in_a_surviving_process():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-X", "faulthandler", str(WORKER), str(N_EXAMPLES)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, f"worker exited with {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert sum(report["examples"].values()) == N_EXAMPLES
    assert all(n > 0 for n in report["examples"].values()), report["examples"]
    assert report["violations"] == 0
    assert len(report["layouts"]) == 13
    assert len(report["pretrained_layouts"]) == 4  # pre-training gave the same weights for each


@pytest.mark.parametrize("make", [
    lambda X: np.asfortranarray(X),
    lambda X: np.ascontiguousarray(X.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
    lambda X: np.flip(np.flip(X, 2).copy(), 2),
    lambda X: X.astype(np.float64),
    lambda X: torch.from_numpy(X).contiguous(memory_format=torch.channels_last),
    lambda X: torch.from_numpy(X).to(torch.bfloat16),
    lambda X: torch.from_numpy(X).requires_grad_(),
])
def test_image_array_and_tensor_are_c_ordered_float32_copies_of_the_same_values(make):
    X = (np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5) / 8).astype(np.float32)
    array, tensor = image_array(make(X.copy())), image_tensor(make(X.copy()))
    assert type(array) is np.ndarray and array.dtype == np.float32 and array.flags.c_contiguous
    assert array.flags.writeable and np.array_equal(array, X)
    assert tensor.dtype == torch.float32 and tensor.stride() == (60, 20, 5, 1) and np.array_equal(tensor.numpy(), X)


def test_image_tensor_rewrites_the_strides_of_single_channel_views_without_copying():
    # (n, 1, H, W) from an NHWC view: contiguous for NumPy and torch, yet torch would run
    # every convolution after it in channels-last
    X = np.random.default_rng(0).random((4, 6, 6, 1), dtype=np.float32).transpose(0, 3, 1, 2)
    assert torch.from_numpy(X).stride() == (36, 1, 6, 1)
    assert not nn.Conv2d(1, 2, 3)(torch.from_numpy(X)).is_contiguous()
    tensor = image_tensor(X)
    assert tensor.stride() == (36, 36, 6, 1) and tensor.data_ptr() == torch.from_numpy(X).data_ptr()
    assert nn.Conv2d(1, 2, 3)(tensor).is_contiguous()


def test_standard_format_undoes_channels_last_weights():
    net = cifar_resnet18(width=4).to(memory_format=torch.channels_last)
    assert not net.conv1.weight.is_contiguous()
    standard_format_(net)
    assert all(t.is_contiguous() for t in [*net.parameters(), *net.buffers()])


def test_channels_last_training_only_where_no_strided_1x1_convolution_has_few_channels():
    assert training_memory_format(cifar_resnet18(width=16), "cpu") == torch.channels_last  # 16, 32, 64
    assert training_memory_format(cifar_resnet18(width=8), "cpu") == torch.contiguous_format  # 8 in
    assert training_memory_format(cifar_resnet18(width=4), "cpu") == torch.contiguous_format  # 4: the trigger
    assert training_memory_format(cifar_resnet18(width=16), "meta") == torch.contiguous_format


def test_forward_batches_cuts_batches_and_restores_the_mode():
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)).train()
    X = np.ascontiguousarray(np.zeros((5, 4, 4, 3), np.float32).transpose(0, 3, 1, 2))
    seen = []
    for start, batch in forward_batches(net, X, batch_size=2):
        seen.append((start, len(batch), net.training, batch.is_contiguous()))
    assert seen == [(0, 2, False, True), (2, 2, False, True), (4, 1, False, True)]
    assert net.training
    assert [net.training for _ in forward_batches(net.eval(), X, 5, training=True)] == [True] and not net.training
    with pytest.raises(ValueError, match="batch_size"):
        list(forward_batches(net, X, 0))
