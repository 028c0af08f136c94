"""Worker of test_input_layouts: fit and predict every estimator on inputs of every layout and dtype.

Run as ``python tests/_layout_worker.py N_EXAMPLES``, in a subprocess, so that a native
crash (the oneDNN overrun that channels-last batches trigger in pruned networks) fails the
test instead of killing the test run. Hypothesis draws a layout and dtype for ``fit`` and
one for ``predict``; every fit must give exactly the probabilities of the reference fit on
the C-ordered float32 array, and no convolution may ever see a non-C-contiguous input or
weight (a global forward pre-hook counts violations). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from metaprune import IterativeFilterPruner, MetaVotePruner, PrunedModelBank, UniformPruner
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.backbone.pretrain import SimSiamPretrainer
from metaprune.data.tasks import Task

torch.set_num_threads(1)

# Values k/8 in [-2, 2]: exact in float16, bfloat16, float32 and float64, so every dtype
# carries the same images.
rng = np.random.default_rng(0)
X_BASE = (rng.integers(-16, 17, size=(48, 3, 8, 8)) / 8).astype(np.float32)
Y = np.repeat([0, 1, 2], 16)
FAST = dict(batch_size=16, lr=1e-2, head_epochs=2, random_state=0)
TMP = tempfile.mkdtemp()


def layouts(X: np.ndarray) -> dict:
    """The same images in every layout and dtype a NumPy or torch user might pass."""
    nhwc = np.ascontiguousarray(X.transpose(0, 2, 3, 1))
    readonly = X.copy()
    readonly.flags.writeable = False
    path = os.path.join(TMP, f"memmap_{len(X)}.dat")
    memmap = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    memmap[:] = X
    memmap.flush()
    return {
        "c_order": X,
        "fortran": np.asfortranarray(X),
        "channels_last_view": nhwc.transpose(0, 3, 1, 2),
        "negative_strides": np.flip(np.flip(X, axis=3).copy(), axis=3),
        "every_other_image": np.repeat(X, 2, axis=0)[::2],
        "read_only": readonly,
        "memmap_read_only": np.memmap(path, dtype=np.float32, mode="r", shape=X.shape),
        "float16": X.astype(np.float16),
        "float64": X.astype(np.float64),
        "tensor": torch.from_numpy(X.copy()),
        "tensor_channels_last": torch.from_numpy(X.copy()).contiguous(memory_format=torch.channels_last),
        "tensor_bfloat16": torch.from_numpy(X.copy()).to(torch.bfloat16),
        "tensor_requires_grad": torch.from_numpy(X.copy()).requires_grad_(),
    }


LAYOUTS = layouts(X_BASE)
for name, array in LAYOUTS.items():  # every layout carries exactly the same images
    values = array.detach().float().numpy() if isinstance(array, torch.Tensor) else np.asarray(array, np.float32)
    assert np.array_equal(values, X_BASE), name

violations = []


def _conv_layout_check(module, inputs):
    if isinstance(module, nn.Conv2d):
        x = inputs[0]
        if not x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
                and x.shape[2] * x.shape[3] > 1 or not module.weight.is_contiguous():
            violations.append((type(module).__name__, tuple(x.shape), tuple(x.stride())))


torch.nn.modules.module.register_module_forward_pre_hook(_conv_layout_check)

torch.manual_seed(0)
BACKBONE = cifar_resnet18(width=4, in_channels=3, num_classes=10)
# r = 0.5 of width 4: strided 1x1 convolutions with 2 and 4 input channels (the trigger)
BANK = PrunedModelBank(BACKBONE)
BANK.build([Task(f"bank-{i}", (0, 1, 2), np.arange(i, 48, 2), []) for i in range(2)],
           IterativeFilterPruner(pruning_ratio=0.5, n_iterations=4, prune_every=2, **FAST), X_BASE, Y,
           progress=False)


def make(name):
    if name == "ifp":
        return IterativeFilterPruner(backbone=BACKBONE, pruning_ratio=0.5, n_iterations=4, prune_every=2, **FAST)
    if name == "ifp_mask":
        return IterativeFilterPruner(backbone=BACKBONE, pruning_ratio=0.5, n_iterations=4, prune_every=2,
                                     surgery="mask", **FAST)
    if name == "uniform":
        return UniformPruner(backbone=BACKBONE, pruning_ratio=0.5, n_iterations=4, **FAST)
    return MetaVotePruner(BANK, n_neighbors=2, n_iterations=4, **FAST)


ESTIMATORS = ("ifp", "ifp_mask", "uniform", "mvp")
REFERENCE = {name: make(name).fit(X_BASE, Y).predict_proba(X_BASE) for name in ESTIMATORS}
tried = {name: 0 for name in ESTIMATORS}


def main(n_examples: int) -> None:
    @settings(max_examples=n_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(estimator=st.sampled_from(ESTIMATORS), fit_layout=st.sampled_from(sorted(LAYOUTS)),
           predict_layout=st.sampled_from(sorted(LAYOUTS)))
    def check(estimator, fit_layout, predict_layout):
        tried[estimator] += 1
        model = make(estimator).fit(LAYOUTS[fit_layout], Y)
        proba = model.predict_proba(LAYOUTS[predict_layout])
        assert np.array_equal(proba, REFERENCE[estimator]), (estimator, fit_layout, predict_layout)
        assert np.array_equal(model.predict(LAYOUTS[predict_layout]), REFERENCE[estimator].argmax(1))
        assert model.score(LAYOUTS[predict_layout], Y) == np.mean(REFERENCE[estimator].argmax(1) == Y)
        assert not violations, violations[:3]

    check()
    # pre-training (width 4: 4 input channels at the first strided 1x1 convolution)
    pretrained = {}
    for layout in ("c_order", "channels_last_view", "negative_strides", "tensor_channels_last"):
        est = SimSiamPretrainer(method="simclr", width=4, epochs=1, batch_size=16, verbose=0, random_state=0)
        pretrained[layout] = est.fit(LAYOUTS[layout]).backbone_.state_dict()
    for layout, state in pretrained.items():
        assert all(torch.equal(state[k], pretrained["c_order"][k]) for k in state), layout
    assert not violations, violations[:3]
    print(json.dumps({"examples": tried, "layouts": sorted(LAYOUTS), "violations": len(violations),
                      "pretrained_layouts": sorted(pretrained)}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
