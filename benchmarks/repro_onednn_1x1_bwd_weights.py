"""Minimal pure-PyTorch reproduction: a heap overrun in oneDNN's strided 1x1 convolution backward.

The weight gradient of a 1x1 convolution with stride 2 on a *channels-last* CPU input with
1-7 input channels is computed by oneDNN's ``jit_avx2_1x1_convolution_bwd_weights_t``,
which writes past the end of a scratch block that ``mkldnn_convolution_backward_weights``
allocates (valgrind: "Invalid write of size 8 ... N bytes after a block of size S"). The
overrun corrupts the heap; the process later dies in ``free()`` / ``munmap_chunk()`` or
goes on with corrupted memory. Nothing of metaprune is imported.

Usage::

    # run the op once (no checker: usually silent corruption)
    python benchmarks/repro_onednn_1x1_bwd_weights.py --case 2,1,1,2,cl

    # each case in its own valgrind process; a table of invalid accesses (needs valgrind)
    python benchmarks/repro_onednn_1x1_bwd_weights.py --valgrind --out benchmarks/results/onednn_1x1_bwd_weights.json

A case is ``in_channels,out_channels,kernel,stride,layout[,groups]`` with layout ``cl``
(channels-last input, the strides of ``images_nhwc.transpose(0, 3, 1, 2)``) or ``nchw``, and
optionally the convolution's groups (the stacked networks of ``fit_many`` use NCHW grouped
convolutions with 1-13 channels per group: ``--cases 8,12,1,2,nchw,4 ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

#: Cases of the committed table: the trigger, its neighbours, and what is safe.
DEFAULT_CASES = [
    *(f"{c},3,1,2,cl" for c in (1, 2, 4, 7, 8, 16)),  # 1-7 input channels overrun; 8 and 16 do not
    "6,13,1,2,cl",  # output channels do not matter
    "2,3,1,2,nchw",  # NCHW input: no overrun
    "2,3,1,1,cl",  # stride 1: no overrun
    "2,3,3,2,cl",  # 3x3 kernel: no overrun
]


def run_case(case: str, batch: int = 8, size: int = 16) -> None:
    """Forward and backward (weight gradient only) of one convolution."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cin, cout, kernel, stride, layout, *groups = case.split(",")
    cin, cout, kernel, stride = int(cin), int(cout), int(kernel), int(stride)
    groups = int(groups[0]) if groups else 1
    x = torch.randn(batch, size, size, cin).permute(0, 3, 1, 2)  # channels-last strides
    if layout == "nchw":
        x = x.contiguous()
    weight = torch.randn(cout, cin // groups, kernel, kernel, requires_grad=True)
    out = torch.nn.functional.conv2d(x, weight, stride=stride, padding=kernel // 2, groups=groups)
    out.sum().backward()
    print(f"case {case}: done (input strides {tuple(x.stride())})", flush=True)


_INVALID = re.compile(r"Invalid (read|write) of size (\d+)")
_WHERE = re.compile(r"is (\d+) bytes (inside|after) a block of size ([\d,]+)")


def valgrind_case(case: str) -> dict:
    """Run one case under valgrind memcheck in its own process; count accesses outside heap blocks."""
    cmd = ["valgrind", "--redzone-size=4096", "--undef-value-errors=no", sys.executable, os.path.abspath(__file__),
           "--case", case]
    log = subprocess.run(cmd, capture_output=True, text=True, timeout=1800).stderr.splitlines()
    writes, past, block, onednn = 0, 0, None, set()
    for i, line in enumerate(log):
        m = _INVALID.search(line)
        if not m or "dl-load" in "".join(log[i:i + 4]) or "strncmp" in "".join(log[i:i + 2]):
            continue  # the dynamic loader's known false positives
        writes += m.group(1) == "write"
        for follow in log[i + 1:i + 40]:
            frame = re.search(r"dnnl::impl::cpu::x64::(\w+)", follow)
            if frame:
                onednn.add(frame.group(1))
            where = _WHERE.search(follow)
            if where:
                size = int(where.group(3).replace(",", ""))
                off = int(where.group(1)) + int(m.group(2)) - (size if where.group(2) == "inside" else 0)
                past, block = max(past, off), size
                break
    return {"case": case, "invalid_writes": writes, "max_bytes_past_block": past, "block_bytes": block,
            "onednn_kernels": sorted(onednn), "corrupts_heap": writes > 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="2,1,1,2,cl")
    parser.add_argument("--valgrind", action="store_true", help="run every case of --cases under valgrind")
    parser.add_argument("--cases", nargs="*", default=DEFAULT_CASES)
    parser.add_argument("--out", help="write the valgrind table as JSON here")
    parser.add_argument("--jobs", type=int, default=1, help="valgrind processes at once")
    args = parser.parse_args(argv)
    if not args.valgrind:
        run_case(args.case)
        return 0
    import torch

    onednn = next((line.strip() for line in torch.__config__.show().splitlines() if "DNN" in line), "")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(valgrind_case, args.cases))
    for case, r in zip(args.cases, rows):
        print(f"{case:>14}  invalid writes {r['invalid_writes']:3d}  up to {r['max_bytes_past_block']:4d} bytes past "
              f"a {r['block_bytes']}-byte block  {' '.join(r['onednn_kernels'])}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "onednn": onednn, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                       "batch": 8, "image_size": 16, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
