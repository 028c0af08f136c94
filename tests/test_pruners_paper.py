"""The paper's hyperparameters one call away, and command-line defaults that are the estimators'."""

import numpy as np
import pytest

from metaprune import IterativeFilterPruner, MetaVotePruner, UniformPruner, paper_parameters
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.cli import jobs_build, jobs_prune
from metaprune.cli.parser import build_parser
from metaprune.data.image_dataset import ImageDataset
from metaprune.pruners.paper import PAPER_HYPERPARAMETERS
from metaprune.pruners.params import constructor_defaults, given_parameters

ESTIMATORS = (IterativeFilterPruner, MetaVotePruner, UniformPruner)


def test_paper_values_of_section_3_and_4():
    assert paper_parameters(IterativeFilterPruner) == {"lr": 1e-4, "n_iterations": 200, "prune_every": 60,
                                                       "head_epochs": 10, "batch_size": 128, "pruning_ratio": 0.9}
    assert paper_parameters(IterativeFilterPruner, limited_data=True)["lr"] == 1e-3
    assert paper_parameters(MetaVotePruner)["lr"] == paper_parameters(UniformPruner)["lr"] == 3e-4
    assert paper_parameters(MetaVotePruner)["temperature"] == 0.025
    assert paper_parameters(MetaVotePruner, limited_data=True) == paper_parameters(MetaVotePruner)
    tiered = paper_parameters(IterativeFilterPruner, dataset="tiered-imagenet")
    assert (tiered["n_iterations"], tiered["prune_every"], tiered["batch_size"]) == (250, 75, 256)
    assert paper_parameters(UniformPruner, dataset="tiered-imagenet")["lr"] == 5e-4


@pytest.mark.parametrize("dataset", sorted(PAPER_HYPERPARAMETERS))
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_paper_parameters_construct_the_estimator_and_set_params_takes_them(cls, dataset):
    params = paper_parameters(cls, dataset=dataset)
    assert set(params) <= set(constructor_defaults(cls))
    estimator = cls(**params)
    assert {k: estimator.get_params()[k] for k in params} == params
    other = cls().set_params(**paper_parameters(cls(), dataset=dataset))  # an instance works as the class
    assert {k: other.get_params()[k] for k in params} == params
    paper_parameters(cls)["lr"] = -1  # a copy: the table itself cannot be changed through it
    assert paper_parameters(cls)["lr"] > 0


def test_paper_parameters_errors():
    with pytest.raises(ValueError, match=r"dataset must be one of \['cifar100', 'tiered-imagenet'\], got 'imagenet'"):
        paper_parameters(IterativeFilterPruner, dataset="imagenet")
    with pytest.raises(ValueError, match="the paper gives no hyperparameters for ImageDataset"):
        paper_parameters(ImageDataset)


def test_constructor_defaults_and_given_parameters():
    defaults = constructor_defaults(IterativeFilterPruner)
    assert defaults == constructor_defaults(IterativeFilterPruner())
    assert defaults["n_iterations"] == 200 and defaults["prune_every"] is None and "backbone" in defaults
    assert given_parameters(lr=0.1, n_iterations=None, batch_size=0) == {"lr": 0.1, "batch_size": 0}


def test_command_line_help_shows_the_estimators_defaults():
    parser = build_parser()
    ifp, mvp, uniform = (constructor_defaults(c) for c in ESTIMATORS)
    bank_help = parser.subcommands["build-bank"].format_help().replace("\n", " ")
    prune_help = parser.subcommands["prune"].format_help().replace("\n", " ")
    for text in (f"default: {ifp['lr']:g}", f"default: {ifp['n_iterations']}", f"default: {ifp['pruning_ratio']}"):
        assert text in " ".join(bank_help.split()), text
    for text in (f"mvp {mvp['lr']:g}", f"uniform {uniform['lr']:g}", f"ifp {ifp['lr']:g}",
                 f"mvp {mvp['n_iterations']}", f"ifp {ifp['n_iterations']}"):
        assert text in " ".join(prune_help.split()), text
    args = parser.parse_args(["build-bank", "--data", "digits", "--backbone", __file__, "--bank", "b.sqlite",
                              "--n-tasks", "2"])
    assert (args.lr, args.iterations, args.pruning_ratio, args.batch_size, args.prune_every) == (None,) * 5


class _Captured(Exception):
    pass


def test_build_bank_and_prune_without_options_use_the_estimators_defaults(tmp_path, monkeypatch):
    """The command line's jobs build the pruners with nothing but the estimators' defaults."""
    from metaprune import PrunedModelBank
    from metaprune.backbone.resnet import save_backbone

    seen = []

    def capture_build(self, tasks, pruner, *args, **kwargs):
        seen.append(pruner)
        raise _Captured

    def capture_fit(self, X, y):
        seen.append(self)
        raise _Captured

    backbone = tmp_path / "bb.safetensors"
    save_backbone(cifar_resnet18(width=2, in_channels=1), backbone)
    rng = np.random.default_rng(0)
    data = ImageDataset(rng.integers(0, 255, (60, 8, 8, 1), dtype=np.uint8), np.repeat(np.arange(3), 20),
                        ("a", "b", "c"))
    monkeypatch.setattr(PrunedModelBank, "build", capture_build)
    with pytest.raises(_Captured):
        jobs_build.build_bank(backbone, data, tmp_path / "bank.sqlite", n_tasks=2, n_way=2, n_test_per_class=5,
                              progress=False)
    for cls in (IterativeFilterPruner, UniformPruner):
        monkeypatch.setattr(cls, "fit", capture_fit)
        with pytest.raises(_Captured):
            jobs_prune.prune_task("ifp" if cls is IterativeFilterPruner else "uniform", data,
                                  tmp_path / "out.safetensors", backbone_path=backbone, verbose=0)
    ignored = {"backbone", "device", "n_threads", "random_state", "verbose"}
    for pruner in seen:
        defaults = constructor_defaults(pruner)
        params = pruner.get_params()
        assert {k: params[k] for k in defaults if k not in ignored} == \
            {k: v for k, v in defaults.items() if k not in ignored}, type(pruner).__name__
    assert [type(p) for p in seen] == [IterativeFilterPruner, IterativeFilterPruner, UniformPruner]
