"""Pre-train the committed CIFAR-100 ResNet-18 backbones (self-supervised and supervised).

Data: ``../shared/data/cifar100/train.npz`` (50,000 real CIFAR-100 images, 500 per class).
A fixed seeded split keeps, per class, ``--train-per-class`` images (default 400) for
training and the rest (100) held out; the held-out images are used ONLY for the k-NN
evaluation (monitor and final card), never for training or for choosing anything.

The run is resumable: ``--checkpoint`` names the training checkpoint (written every
epoch, atomically); re-running the same command after a kill continues where it stopped.
At the end it writes ``<out-dir>/<name>.safetensors`` (:func:`metaprune.backbone.resnet.save_backbone`)
and a card ``<out-dir>/<name>.md``.

Examples
--------
    python benchmarks/pretrain_cifar.py --method simclr --width 16 --epochs 30 \\
        --checkpoint runs/simclr_w16.ckpt --threads 2
    python benchmarks/pretrain_cifar.py --method supervised --width 16 --epochs 8 \\
        --checkpoint runs/sup_w16.ckpt --threads 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metaprune.backbone.architectures import torchvision_backbone  # noqa: E402
from metaprune.backbone.resnet import cifar_resnet18, fingerprint, save_backbone  # noqa: E402
from metaprune.channels.filter_space import head_name  # noqa: E402
from metaprune.backbone.pretrain import (  # noqa: E402
    SimSiamPretrainer,
    SupervisedPretrainer,
    extract_features,
    knn_accuracy,
)

from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD  # noqa: E402
from metaprune.pruners.batchnorm import recalibrate_batchnorm  # noqa: E402


def normalised_images(x_uint8_nhwc):
    """CIFAR uint8 NHWC images as the float NCHW tensor the pre-training normalises them to."""
    x = torch.from_numpy(x_uint8_nhwc).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CIFAR100_MEAN).view(1, -1, 1, 1)
    return (x - mean) / torch.tensor(CIFAR100_STD).view(1, -1, 1, 1)


DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar100" / "train.npz"


def split_per_class(y, n_train, seed=0):
    """Fixed seeded per-class split: first ``n_train`` of a per-class permutation train, rest held out."""
    rng = np.random.default_rng(seed)
    tr, ho = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        tr.append(idx[:n_train])
        ho.append(idx[n_train:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(ho))


def subsample_per_class(y, n, seed=1):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["simsiam", "simclr", "supervised"], default="simsiam")
    ap.add_argument("--width", type=int, default=16, help="CIFAR ResNet-18 width (--arch resnet18)")
    ap.add_argument("--arch", default="resnet18",
                    help="resnet18 (metaprune's CIFAR ResNet-18) or a torchvision builder, e.g. mobilenet_v2")
    ap.add_argument("--width-mult", type=float, default=None, help="width_mult of a torchvision builder")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--lr", type=float, default=None, help="base lr (per 256); default 0.06 SSL, 0.1 supervised"
    )
    ap.add_argument("--warmup-epochs", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--out-dir", default=str(ROOT / "metaprune" / "checkpoints"))
    ap.add_argument("--name", default=None, help="default: cifar100_resnet18_w<width>_<method>")
    ap.add_argument("--checkpoint", default=None, help="resumable training checkpoint file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--train-per-class", type=int, default=400)
    ap.add_argument(
        "--subset-per-class", type=int, default=None, help="trials: train on fewer images per class"
    )
    ap.add_argument("--knn-every", type=int, default=2)
    ap.add_argument(
        "--knn-bank-per-class", type=int, default=100, help="train images per class in the monitor"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="trials: do not write the backbone and card")
    ap.add_argument("--recalibrate-bn", action="store_true",
                    help="after training, recompute BatchNorm statistics on the un-augmented training images "
                         "(short runs of MobileNets leave stale running statistics)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.arch == "resnet18":
        name = args.name or f"cifar100_resnet18_w{args.width}_{args.method}"
        description = (f"CIFAR-style ResNet-18, width {args.width} (stage widths "
                       f"{[args.width * m for m in (1, 2, 4, 8)]})")
    else:
        suffix = "" if args.width_mult is None else f"_wm{args.width_mult:g}"
        name = args.name or f"cifar100_{args.arch}{suffix}_{args.method}"
        description = (f"torchvision `{args.arch}`" + ("" if args.width_mult is None else
                                                       f" with width_mult={args.width_mult:g}") +
                       ", rebuilt from its recipe (no torchvision weights)")

    def new_backbone(seed):
        if args.arch == "resnet18":
            return None
        kwargs = {} if args.width_mult is None else {"width_mult": args.width_mult}
        torch.manual_seed(seed)
        return torchvision_backbone(args.arch, num_classes=100, **kwargs)

    t_start = time.time()

    with np.load(args.data, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    tr, ho = split_per_class(y, args.train_per_class, seed=0)
    x_tr, y_tr, x_ho, y_ho = x[tr], y[tr], x[ho], y[ho]
    if args.subset_per_class:
        s = subsample_per_class(y_tr, args.subset_per_class, seed=2)
        x_fit, y_fit = x_tr[s], y_tr[s]
    else:
        x_fit, y_fit = x_tr, y_tr
    bank = subsample_per_class(y_tr, args.knn_bank_per_class, seed=1)
    knn_data = (x_tr[bank], y_tr[bank], x_ho, y_ho)

    common = dict(
        width=args.width,
        backbone=new_backbone(args.seed),
        epochs=args.epochs,
        batch_size=args.batch_size,
        checkpoint_path=args.checkpoint,
        knn_every=args.knn_every,
        knn_data=knn_data,
        random_state=args.seed,
        n_threads=None,  # --threads decides
        verbose=1,
    )
    if args.warmup_epochs is not None:
        common["warmup_epochs"] = args.warmup_epochs
    if args.method == "supervised":
        est = SupervisedPretrainer(lr=args.lr if args.lr is not None else 0.1, **common)
        est.fit(x_fit, y_fit)
    else:
        est = SimSiamPretrainer(
            method=args.method,
            lr=args.lr if args.lr is not None else 0.06,
            temperature=args.temperature,
            **common,
        )
        est.fit(x_fit)
    if args.recalibrate_bn:
        recalibrate_batchnorm(est.backbone_, normalised_images(x_fit))
        est.backbone_.eval()
    wall = time.time() - t_start
    train_time = sum(h["time_s"] + h.get("knn_time_s", 0) for h in est.history_)

    # final evaluation: all training images of the split as the k-NN bank, held-out as queries
    torch.manual_seed(args.seed)
    n_out = est.backbone_.get_submodule(head_name(est.backbone_)).out_features
    random_net = cifar_resnet18(width=args.width, num_classes=n_out) if args.arch == "resnet18" else \
        new_backbone(args.seed).eval()
    scores = {}
    for label, net in (("pretrained", est.backbone_), ("random_init", random_net)):
        f_tr = extract_features(net, x_tr)
        f_ho = extract_features(net, x_ho)
        scores[label] = knn_accuracy(f_tr, y_tr, f_ho, y_ho, k=20, n_way=5, n_tasks=500, random_state=0)
    print(f"final 5-way k-NN (held-out): pretrained={scores['pretrained']:.4f} "
          f"random_init={scores['random_init']:.4f}", flush=True)

    if args.no_save:
        return scores
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cli_args = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/pretrain_cifar.py " + " ".join(shlex.quote(a) for a in cli_args)
    data_desc = (
        f"CIFAR-100 train.npz (shared/data/cifar100), split seed 0: {args.train_per_class} train / "
        f"the rest ({len(x_ho)} images) held out; trained on {len(x_fit)} images"
    )
    meta = {
        "command": command,
        "method": args.method,
        "epochs": args.epochs,
        "width": args.width,
        "arch": args.arch,
        "width_mult": args.width_mult,
        "batch_size": args.batch_size,
        "lr": est.lr,
        "wall_time_s": round(wall, 1),
        "train_time_s_total_over_resumes": round(train_time, 1),
        "data": data_desc,
        "knn_5way_heldout": scores,
        "history": est.history_,
        "params": {k: v for k, v in est.get_params().items() if k not in ("knn_data", "backbone")},
    }
    path = out / f"{name}.safetensors"
    save_backbone(est.backbone_, path, json.loads(json.dumps(meta, default=str)))
    lines = [
        f"# {name}",
        "",
        f"{description}, pre-trained with **{args.method}**.",
        "",
        f"- command: `{command}`",
        f"- data: {data_desc}",
        f"- BatchNorm statistics: {'recomputed after training on the un-augmented training images' if args.recalibrate_bn else 'running averages from training'}",
        f"- epochs: {args.epochs}, batch size {args.batch_size}, base lr {est.lr} (x batch/256), "
        f"warm-up {est.warmup_epochs} epochs, cosine schedule, SGD momentum {est.momentum}, "
        f"weight decay {est.weight_decay}",
        f"- training time (sum over epochs, incl. monitor, all resumes): {train_time / 60:.1f} min; "
        f"this invocation's wall time: {wall / 60:.1f} min; {args.threads} CPU thread(s) "
        "on a 2-core machine shared with other work",
        f"- fingerprint: `{fingerprint(est.backbone_)}`",
        f"- file: `{path.name}` ({path.stat().st_size / 1e6:.2f} MB)",
        "",
        "## Final 5-way k-NN accuracy on held-out images",
        "",
        "Cosine k-NN (k=20, similarity-weighted vote), 500 random 5-way tasks; bank = all training",
        "images of the split (never the held-out ones), queries = the held-out images.",
        "",
        "| network | 5-way k-NN accuracy |",
        "|---|---|",
        f"| this checkpoint | {scores['pretrained']:.4f} |",
        f"| randomly initialised, same shape (seed {args.seed}) | {scores['random_init']:.4f} |",
        "",
        "## Training curve",
        "",
        f"k-NN monitor: 100 random 5-way tasks, bank = {args.knn_bank_per_class} training images per class, "
        "queries = held-out.",
        "",
        "| epoch | loss | lr | epoch time (s) | aug time (s) | 5-way k-NN |",
        "|---|---|---|---|---|---|",
    ]
    for h in est.history_:
        knn = "" if h["knn_acc"] is None else f"{h['knn_acc']:.4f}"
        lines.append(
            f"| {h['epoch']} | {h['loss']:.4f} | {h['lr']:.4f} | {h['time_s']:.1f} | "
            f"{h['aug_time_s']:.1f} | {knn} |"
        )
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path} and {out / (name + '.md')}", flush=True)
    return scores


if __name__ == "__main__":
    main()
