"""Figures of the results page, drawn at build time from the results committed in the repository.

Each function draws one matplotlib figure from files under ``benchmarks/results/`` or the
shipped checkpoints' metadata; ``docs/results.md`` calls them from ``plot`` directives, so the
figures always show the numbers the tables next to them include.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINTS = ROOT / "metaprune" / "checkpoints"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def ifp_speed():
    """Wall time of IFP with physical surgery and with masks, per benchmark run."""
    runs = [("ifp_speed.json", "width 16"), ("ifp_speed_w32.json", "width 32")]
    fig, axes = plt.subplots(1, len(runs), figsize=(7.5, 3.2), layout="constrained")
    for ax, (name, label) in zip(axes, runs):
        result = _load(name)
        times = result["wall_time_s"]
        modes = ["physical", "mask"]
        medians = [sorted(times[m])[len(times[m]) // 2] for m in modes]
        bars = ax.bar(["physical surgery", "masks"], medians, color=["C0", "C7"])
        for bar, mode in zip(bars, modes):
            ax.annotate(f"acc {result['held_out_accuracy'][mode]:.3f}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{label}, {result['threads']} thread(s)", fontsize=9)
        ax.set_ylabel("IFP wall time (s)")
        ax.set_ylim(0, max(medians) * 1.18)
    ifp = _load(runs[0][0])["ifp"]
    fig.suptitle(f"one 5-way CIFAR-100 task, r = {ifp['pruning_ratio']}, J = {ifp['n_iterations']}, "
                 f"h = {ifp['prune_every']}, batch {ifp['batch_size']}", fontsize=9)
    return fig


def bank_query():
    """Median and 90th-percentile time of each step of one MVP query on the 10,000-task bank."""
    result = _load("bank.json")
    steps = [s for s in result["query"] if s != "total"]
    median = [result["query"][s]["median_ms"] for s in steps]
    p90 = [result["query"][s]["p90_ms"] for s in steps]
    fig, ax = plt.subplots(figsize=(7.5, 3), layout="constrained")
    y = range(len(steps))
    ax.barh([i + 0.2 for i in y], median, height=0.4, label="median", color="C0")
    ax.barh([i - 0.2 for i in y], p90, height=0.4, label="90th percentile", color="C1")
    ax.set_yticks(list(y), [s.replace("_", " ") for s in steps])
    ax.invert_yaxis()
    ax.axvline(result["query_target_ms"], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("ms per query")
    ax.set_title(f"bank of {result['n_tasks']:,} tasks, {result['n_neighbours']} neighbours; "
                 f"dashed: {result['query_target_ms']} ms target for a whole query", fontsize=9)
    ax.legend(loc="lower right")
    return fig


def checkpoint_knn():
    """Held-out 5-way k-NN accuracy of the shipped backbones, and the SimCLR monitor curve."""
    from metaprune.backbone.resnet import backbone_metadata

    cards = {name: backbone_metadata(CHECKPOINTS / f"cifar100_resnet18_w16_{name}.safetensors")
             for name in ("simclr", "supervised")}
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.2), layout="constrained",
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    labels = ["random init", "SimCLR", "supervised"]
    values = [cards["simclr"]["knn_5way_heldout"]["random_init"],
              cards["simclr"]["knn_5way_heldout"]["pretrained"],
              cards["supervised"]["knn_5way_heldout"]["pretrained"]]
    left.bar(labels, values, color=["C7", "C0", "C1"])
    left.axhline(0.2, color="grey", linestyle="--", linewidth=1)
    left.set_ylim(0, 1)
    left.set_ylabel("5-way k-NN accuracy")
    left.set_title("final, held-out images", fontsize=9)
    points = [(h["epoch"], h["knn_acc"]) for h in cards["simclr"]["history"] if h.get("knn_acc") is not None]
    right.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="C0")
    right.set_xlabel("epoch")
    right.set_ylabel("5-way k-NN accuracy")
    right.set_title("SimCLR, k-NN monitor during pre-training", fontsize=9)
    return fig
