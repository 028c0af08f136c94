"""Channel groups of torchvision's CNNs found by tracing (issue 16): one table.

For every architecture (torchvision builder at random init, 10 classes, 3 x 64 x 64 images):
the number of channel groups (and of groups kept in whole blocks, for grouped
convolutions), the time to discover them (:func:`metaprune.channels.tracing.trace_filter_space`:
fx tracing, one shape-propagation pass, the channel analysis; median of ``--repeats``), the
parameters and FLOPs of the dense network and of a network keeping 10% of every group
(random channels, seed 0), and the largest absolute difference between that extracted
network's logits and the masked full network's (:func:`metaprune.channels.surgery.mask_channels`)
on 4 random images, with BatchNorm and LayerNorm statistics randomised so that a wrong cut
cannot hide. Results: ``benchmarks/results/architectures.json`` and ``.md``.

    python benchmarks/bench_architectures.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
ARCHITECTURES = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
                 "regnet_y_400mf", "vgg11_bn", "convnext_tiny", "densenet121")


def randomise_statistics_(net, seed=0):
    """Non-trivial BatchNorm / LayerNorm / layer-scale values (random init has 0 mean, 1 variance)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
        elif isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    for name, p in net.named_parameters():
        if name.endswith("layer_scale"):
            p.data.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return net.eval()


def keep_fraction(space, fraction, seed=0):
    """A random selection keeping ``fraction`` of every group (whole blocks where required)."""
    from metaprune.channels.selection import Selection

    rng = np.random.default_rng(seed)
    kept = {}
    for g in space:
        blocks = g.size // g.unit
        chosen = np.sort(rng.choice(blocks, max(1, round(fraction * blocks)), replace=False))
        kept[g.name] = (chosen[:, None] * g.unit + np.arange(g.unit)).ravel()
    return Selection(kept, space)


def measure(name, shape, repeats):
    import torch
    import torchvision

    from metaprune.channels.complexity import count_flops, count_parameters
    from metaprune.channels.surgery import channel_masks_applied, extract
    from metaprune.channels.tracing import trace_filter_space

    torch.manual_seed(0)
    net = randomise_statistics_(getattr(torchvision.models, name)(num_classes=10))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        space, info = trace_filter_space(net, shape)
        times.append(time.perf_counter() - start)
    selection = keep_fraction(space, 0.1)
    small = extract(net, selection, space)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = small(x)
        with channel_masks_applied(net, selection, space):
            expected = net(x)
    return {"architecture": name, "groups": len(space), "groups_in_blocks": sum(g.unit > 1 for g in space),
            "head": info.head, "discovery_s": statistics.median(times),
            "params_dense": count_parameters(net), "params_10pct": count_parameters(small),
            "flops_dense": count_flops(net, shape), "flops_10pct": count_flops(small, shape),
            "max_abs_diff": float((got - expected).abs().max()), "max_abs_logit": float(expected.abs().max())}


def write_markdown(rows, meta, path):
    lines = ["# Channel groups of torchvision CNNs, found by tracing", "",
             f"`python benchmarks/bench_architectures.py --threads {meta['threads']}`; {meta['machine']}; "
             f"torch {meta['torch']}, torchvision {meta['torchvision']}; images {meta['shape']}, 10 classes, "
             "random init with randomised normalisation statistics.", "",
             "10% keep: a random 10% of every group's channels (whole blocks for groups read by grouped "
             "convolutions). Max abs diff: extracted network vs the masked full network, logits on 4 random "
             "images (largest logit magnitude in brackets). Discovery: fx trace + one shape pass + the "
             f"channel analysis, median of {meta['repeats']}.", "",
             "| architecture | groups (in blocks) | head | params dense | params 10% | FLOPs dense | FLOPs 10% "
             "| max abs diff (max logit) | discovery (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['architecture']} | {r['groups']} ({r['groups_in_blocks']}) | `{r['head']}` | "
            f"{r['params_dense'] / 1e6:.2f} M | {r['params_10pct'] / 1e6:.3f} M "
            f"({r['params_10pct'] / r['params_dense']:.1%}) | {r['flops_dense'] / 1e6:.0f} M | "
            f"{r['flops_10pct'] / 1e6:.1f} M ({r['flops_10pct'] / r['flops_dense']:.1%}) | "
            f"{r['max_abs_diff']:.1e} ({r['max_abs_logit']:.2f}) | {r['discovery_s']:.2f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--architectures", nargs="*", default=list(ARCHITECTURES))
    args = parser.parse_args(argv)

    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    shape = (3, args.size, args.size)
    rows = []
    for name in args.architectures:
        rows.append(measure(name, shape, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"threads": args.threads, "repeats": args.repeats, "shape": list(shape), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "machine": f"{platform.machine()}, {args.threads} thread(s)"}
    OUT.mkdir(exist_ok=True)
    (OUT / "architectures.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    write_markdown(rows, meta, OUT / "architectures.md")


if __name__ == "__main__":
    main()
