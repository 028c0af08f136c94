"""Tables, claim checks and figures from the cells of a reproduction run.

Everything here reads ``<results>/cells/*.json`` (plus ``plan.json`` and the bank's
selections) and writes ``results.json``, ``cells.csv``, ``summary.md`` and ``fig_*.png``. It
can be re-run at any time (``reproduce.py --report-only``); missing cells are reported as
missing, never filled in.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from metaprune.analysis import covered_histogram, iou_per_group, vote_recall
from metaprune.channels.selection import Selection
from metaprune.paired_statistics import bootstrap_mean_ci, compare_paired

from .runner import _write_json, load_rows

# written by benchmarks/diagnose_init.py and diagnose_selection_noise.py; shown in the summary when present
DIAGNOSTICS = ("diagnostics_init.md", "diagnostics_seed_noise.md", "diagnostics_first_event.md",
               "diagnostics_iou_iterations.md", "diagnostics_heads.md", "diagnostics_growing_bank.md")

SCALARS = ["id", "group", "method", "task", "multiple", "iterations", "n_iter", "shared", "n_neighbors", "similarity",
           "backbone", "lr", "n_train", "n_test", "accuracy", "fit_time_s", "train_flops", "flops", "params",
           "peak_memory_mb"]


# -- selecting rows ------------------------------------------------------------------------------

def _pick(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _stats(rows, key="accuracy"):
    values = np.array([r[key] for r in rows], dtype=float)
    if values.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}


def _fmt(s, digits=3):
    if s["n"] == 0:
        return "missing"
    return f"{s['mean']:.{digits}f} ({s['std']:.{digits}f})"


def _ifp_label(m, J):
    return f"IFP {m}x ({m * J} it)"


def _baselines(rows, J) -> list:
    """(key, label, rows) of the uniform baseline and of IFP at each multiple of the iterations."""
    out = [("uniform", f"Uniform ({J} it)", _pick(rows, method="uniform"))]
    for m in sorted({r["multiple"] for r in _pick(rows, method="ifp")}):
        out.append((f"ifp_x{m}", _ifp_label(m, J), _pick(rows, method="ifp", multiple=m)))
    return out


# -- tables --------------------------------------------------------------------------------------

def group_table(rows, group, preset) -> tuple:
    """Markdown table of one group (mean (std) accuracy over test tasks) and its numbers."""
    J = preset["iterations"]
    shared, neighbors = preset["shared"], preset["neighbors"]
    g = _pick(rows, group=group)
    numbers = {}
    lines = ["| method | " + " | ".join(f"c = {c}" for c in shared) + " |",
             "|---|" + "---|" * len(shared)]
    for n in neighbors:
        cells = []
        for c in shared:
            s = _stats(_pick(g, method="mvp", n_neighbors=n, shared=c))
            numbers[f"mvp_N{n}_c{c}"] = s
            cells.append(_fmt(s))
        lines.append(f"| MVP N={n} ({J} it) | " + " | ".join(cells) + " |")
    for key, label, sel in _baselines(g, J):
        s = _stats(sel)
        numbers[key] = s
        lines.append(f"| {label} | " + " | ".join([_fmt(s)] * len(shared)) + " |")
    return "\n".join(lines), numbers


def group3_table(rows, preset) -> tuple:
    J = preset["iterations"]
    numbers = {}
    lines = ["| method | accuracy | mean prototype similarity of the neighbours |", "|---|---|---|"]
    for n in preset["neighbors"]:
        sel = _pick(rows, group="III", method="mvp", n_neighbors=n)
        s = _stats(sel)
        numbers[f"mvp_N{n}"] = s
        sim = np.mean([np.mean([x[1] for x in r["neighbors"]]) for r in sel]) if sel else float("nan")
        lines.append(f"| MVP N={n}, prototype similarity ({J} it) | {_fmt(s)} | {sim:.3f} |")
    for key, label, sel in _baselines(_pick(rows, group="I"), J):
        s = _stats(sel)
        numbers[key] = s
        lines.append(f"| {label} | {_fmt(s)} | |")
    return "\n".join(lines), numbers


def efficiency_table(rows, preset) -> tuple:
    J = preset["iterations"]
    g = _pick(rows, group="I")
    methods = [(f"MVP N={n} ({J} it, all c)", _pick(g, method="mvp", n_neighbors=n)) for n in preset["neighbors"]]
    methods += [(label, sel) for _, label, sel in _baselines(g, J)]
    lines = ["| method | accuracy | iterations | wall time (s) | training GFLOPs | peak memory (MiB) | params | "
             "MFLOPs/image |", "|---|---|---|---|---|---|---|---|"]
    numbers = {}
    for label, sel in methods:
        if not sel:
            continue
        st = {k: _stats(sel, k) for k in ("accuracy", "n_iter", "fit_time_s", "train_flops", "peak_memory_mb",
                                          "params", "flops")}
        numbers[label] = {k: v["mean"] for k, v in st.items()}
        lines.append(f"| {label} | {_fmt(st['accuracy'])} | {st['n_iter']['mean']:.0f} | "
                     f"{st['fit_time_s']['mean']:.1f} | {st['train_flops']['mean'] / 1e9:.2f} | "
                     f"{st['peak_memory_mb']['mean']:.1f} | {st['params']['mean']:.0f} | "
                     f"{st['flops']['mean'] / 1e6:.2f} |")
    return "\n".join(lines), numbers


# -- study ---------------------------------------------------------------------------------------

def bank_selections(results: Path, cache: Path | None) -> dict:
    """The bank tasks' selections, read from the bank file once and kept in the results."""
    path = results / "bank_selections.json"
    if path.is_file():
        return json.loads(path.read_text())
    bank_file = None if cache is None else cache / "bank.sqlite"
    if bank_file is None or not bank_file.is_file():
        return {}
    from metaprune import PrunedModelBank
    with PrunedModelBank.open(bank_file, read_only=True) as bank:
        out = {"sizes": dict(bank.filter_space.sizes),
               "selections": {t: s.to_dict() for t, s in zip(bank.task_ids, bank.selections(bank.task_ids))}}
    _write_json(path, out)
    return out


def study(rows, plan, bank) -> dict:
    """IoU per group vs. shared classes, b(a) and d(a): the test task's longest IFP run as target."""
    preset = plan["preset"]
    if not bank:
        return {}
    selections, sizes = bank["selections"], bank["sizes"]
    longest = {}
    for r in _pick(rows, group="I", method="ifp"):
        if r["task"] not in longest or r["multiple"] > longest[r["task"]]["multiple"]:
            longest[r["task"]] = r
    out = {"target_multiple": sorted({r["multiple"] for r in longest.values()}), "iou": {}, "recall": {},
           "covered": {}}
    for c in preset["shared"]:
        ious, recalls, covers = [], [], []
        for task, r in longest.items():
            ids = plan["bank_tasks"].get(f"{task}/c{c}", [])
            neighbours = [Selection.from_dict(selections[i]) for i in ids if i in selections]
            if not neighbours:
                continue
            target = Selection.from_dict(r["selection"])
            ious.append({g: float(np.mean([iou_per_group(target, n)[g] for n in neighbours])) for g in target})
            recalls.append({g: v.tolist() for g, v in vote_recall(target, neighbours, sizes).items()})
            covers.append({g: v.tolist() for g, v in covered_histogram(target, neighbours, sizes).items()})
        if ious:
            groups = list(ious[0])
            out["iou"][c] = {g: float(np.mean([x[g] for x in ious])) for g in groups}
            out["recall"][c] = {g: np.nanmean(np.array([x[g] for x in recalls], dtype=float), axis=0).tolist()
                                for g in groups}
            out["covered"][c] = np.mean([np.mean([x[g] for g in groups], axis=0) for x in covers], axis=0).tolist()
    return out


def bank_pair_overlap(bank, classes: dict, deep=("layer3", "layer4")) -> dict:
    """IoU per group between every pair of bank tasks, by how many classes the pair shares.

    The paper's Fig. 3 on the bank itself (all pairs, not only a test task and its
    neighbours): if pruning found class-specific channels, pairs sharing more classes keep
    more of the same channels in the deep groups. ``deep_by_c`` gives the mean over the deep
    groups with a 95% bootstrap interval over pairs (pairs share tasks, so it is optimistic).
    """
    if not bank or not classes:
        return {}
    groups = list(bank["sizes"])
    sels = {t: Selection.from_dict(s) for t, s in bank["selections"].items() if t in classes}
    ids = sorted(sels)
    if len(ids) < 2:
        return {}
    by_c: dict = {}
    n_identical = 0
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if set(classes[a]) == set(classes[b]):  # the same task under two ids: same data, same seed
                n_identical += 1
                continue
            c = len(set(classes[a]) & set(classes[b]))
            iou = iou_per_group(sels[a], sels[b])
            by_c.setdefault(c, []).append([iou[g] for g in groups])
    deep_idx = [k for k, g in enumerate(groups) if g.startswith(deep)]
    # two random subsets of sizes k of n channels share k^2 / n on average: IoU ~ k / (2n - k)
    kept = {g: float(np.mean([len(sels[t][g]) for t in ids])) for g in groups}
    chance = {g: kept[g] / (2 * bank["sizes"][g] - kept[g]) for g in groups}
    out = {"chance_iou": chance, "groups": groups, "deep": [groups[k] for k in deep_idx], "by_c": {}, "deep_by_c": {},
           "n_identical_pairs_left_out": n_identical}
    for c in sorted(by_c):
        iou = np.array(by_c[c])
        out["by_c"][c] = {"n_pairs": len(iou), "iou": dict(zip(groups, iou.mean(0).tolist()))}
        if deep_idx and len(iou) >= 2:
            d = iou[:, deep_idx].mean(1)
            out["deep_by_c"][c] = {"mean": float(d.mean()), "ci": list(bootstrap_mean_ci(d, n_resamples=2000,
                                                                                          random_state=0)),
                                   "n_pairs": len(d)}
    return out


def backbone_comparison(rows, preset) -> dict:
    out = {}
    for m in sorted({r["multiple"] for r in _pick(rows, group="study")}):
        sup = {r["task"]: r["accuracy"] for r in _pick(rows, group="study", multiple=m)}
        ssl = {r["task"]: r["accuracy"] for r in _pick(rows, group="I", method="ifp", multiple=m) if r["task"] in sup}
        tasks = sorted(ssl)
        out[m] = {"ssl": _stats([{"accuracy": ssl[t]} for t in tasks]),
                  "sup": _stats([{"accuracy": sup[t]} for t in tasks]),
                  "ssl_wins": int(sum(ssl[t] >= sup[t] for t in tasks)), "n": len(tasks)}
    return out


# -- claims --------------------------------------------------------------------------------------

def _by_task(rows, key="accuracy") -> dict:
    return {r["task"]: r[key] for r in rows}


def _paired(claim, a_rows, b_rows, margin=0.0, within=False):
    """A claim on accuracy judged on the per-task differences ``a - b`` (None if < 2 shared tasks)."""
    a, b = _by_task(a_rows), _by_task(b_rows)
    if len(set(a) & set(b)) < 2:
        return None
    c = compare_paired(a, b, random_state=0)
    verdict = c.verdict(margin, within=within)
    s = c.sign
    evidence = (f"{c.mean_a:.3f} vs {c.mean_b:.3f}; a - b = {c.mean_difference:+.3f} "
                f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]; {s.wins}/{s.ties}/{s.losses} tasks; sign p = {s.p_value:.3g}")
    return {"claim": claim, "verdict": verdict, "holds": verdict == "holds", "evidence": evidence,
            "margin": margin, "within": within, "paired": c.to_dict()}


def _plain(claim, holds, evidence):
    """A claim that is one measured number against a threshold (no task-to-task spread to test)."""
    holds = bool(holds)
    return {"claim": claim, "verdict": "holds" if holds else "fails", "holds": holds, "evidence": evidence}


def claims(rows, study_out, preset) -> list:
    """The paper's claims at this preset, each a dict with ``claim``, ``verdict`` and ``evidence``.

    Accuracy claims compare two methods on the same test tasks: the verdict comes from the 95%
    bootstrap interval of the mean per-task difference (``holds`` when it lies wholly on the
    claimed side of the margin, ``fails`` when wholly on the other, else ``undecided``), with the
    wins/ties/losses and the exact sign test's p-value beside it.
    """
    out = []
    n_max = max(preset["neighbors"])
    J = preset["iterations"]
    g1, g2 = _pick(rows, group="I"), _pick(rows, group="II")
    ifp = {(g, m): _pick(rows, group=g, method="ifp", multiple=m) for g in ("I", "II") for m in (1, 5)}
    for c in [c for c in preset["shared"] if c >= 3]:
        mvp = _pick(g1, method="mvp", n_neighbors=n_max, shared=c)
        out.append(_paired(f"Group I, c={c}: MVP N={n_max} >= IFP 5x", mvp, ifp["I", 5]))
        out.append(_paired(f"Group I, c={c}: MVP N={n_max} >= Uniform + 0.05", mvp, _pick(g1, method="uniform"),
                           margin=0.05))
    for c in preset["shared"]:
        mvp = _pick(g2, method="mvp", n_neighbors=n_max, shared=c)
        out.append(_paired(f"Group II, c={c}: MVP N={n_max} >= IFP 1x + 0.05", mvp, ifp["II", 1], margin=0.05))
        out.append(_paired(f"Group II, c={c}: MVP N={n_max} with {preset['limited_per_class']} images/class "
                           f"within 0.02 of all images", mvp, _pick(g1, method="mvp", n_neighbors=n_max, shared=c),
                           margin=0.02, within=True))
    out.append(_paired(f"Group III: MVP N={n_max} (prototype similarity) >= IFP 1x",
                       _pick(rows, group="III", method="mvp", n_neighbors=n_max), ifp["I", 1]))
    mvp_flops = _stats(_pick(g1, method="mvp", n_neighbors=n_max), "train_flops")
    ifp5_flops = _stats(ifp["I", 5], "train_flops")
    if mvp_flops["n"] and ifp5_flops["n"]:
        ratio = mvp_flops["mean"] / ifp5_flops["mean"]
        out.append(_plain("Efficiency: MVP training FLOPs <= 10% of IFP 5x", ratio <= 0.10, f"{100 * ratio:.1f}%"))
    for m in sorted({r["multiple"] for r in _pick(rows, group="study")}):
        out.append(_paired(f"Study: self-supervised >= supervised under IFP {m}x ({m * J} it)",
                           _pick(g1, method="ifp", multiple=m), _pick(rows, group="study", multiple=m)))
    if study_out.get("iou"):
        cs = sorted(study_out["iou"], key=int)
        groups = list(study_out["iou"][cs[0]])
        deep = [g for g in groups if g.startswith(("layer3", "layer4"))]
        rising = [g for g in deep if np.corrcoef([int(c) for c in cs], [study_out["iou"][c][g] for c in cs])[0, 1] > 0]
        out.append(_plain("Study: IoU grows with shared classes in the deeper groups (layer3, layer4)",
                          len(rising) == len(deep),
                          f"{len(rising)}/{len(deep)} deep groups rise; mean IoU by c: " + ", ".join(
                              f"c={c} {np.mean([study_out['iou'][c][g] for g in deep]):.3f}" for c in cs)))
        curve = np.nanmean([[v for v in rec[g]] for rec in study_out["recall"].values() for g in rec], axis=0)
        a = np.arange(1, len(curve) + 1)
        ok = ~np.isnan(curve)
        r = float(np.corrcoef(a[ok], curve[ok])[0, 1])
        out.append(_plain("Study: b(a) increases with a", r > 0, f"correlation {r:.2f}; b(1)={curve[0]:.2f}, "
                          f"b({len(curve)})={curve[-1]:.2f}"))
    pairs = study_out.get("bank_pairs", {}).get("deep_by_c")
    if pairs and len(pairs) >= 2:
        cs = sorted(pairs, key=int)
        lo, hi = pairs[cs[0]], pairs[cs[-1]]
        out.append(_plain(f"Study: bank task pairs sharing c={cs[-1]} classes overlap more in the deep groups than "
                          f"pairs sharing c={cs[0]} (95% intervals apart)", lo["ci"][1] < hi["ci"][0],
                          f"mean deep IoU c={cs[0]} {lo['mean']:.3f} [{lo['ci'][0]:.3f}, {lo['ci'][1]:.3f}] vs "
                          f"c={cs[-1]} {hi['mean']:.3f} [{hi['ci'][0]:.3f}, {hi['ci'][1]:.3f}]"))
    return [c for c in out if c is not None]


# -- figures -------------------------------------------------------------------------------------

def figures(results: Path, rows, numbers, study_out, preset) -> list:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(results / name, dpi=110)
        plt.close(fig)
        written.append(name)

    # Groups I and II: accuracy vs c per N, baselines as lines; Group III as bars
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, group in zip(axes[:2], ("I", "II")):
        nums = numbers[group]
        for i, n in enumerate(preset["neighbors"]):
            ms = [nums[f"mvp_N{n}_c{c}"] for c in preset["shared"]]
            ax.errorbar(preset["shared"], [s["mean"] for s in ms], yerr=[s["std"] for s in ms], marker="o",
                        capsize=3, label=f"MVP N={n}", color=f"C{i}")
        for j, key in enumerate(k for k in nums if not k.startswith("mvp")):
            if nums[key]["n"]:
                ax.axhline(nums[key]["mean"], linestyle="--", color=f"C{j + 4}", label=key.replace("_", " "))
        ax.set_title(f"Group {group}" + (" (all images)" if group == "I" else
                                         f" ({preset['limited_per_class']} images/class)"))
        ax.set_xlabel("classes shared with the neighbours (c)")
        ax.set_ylabel("held-out accuracy")
        ax.set_xticks(preset["shared"])
        ax.legend(fontsize=7)
    nums = numbers["III"]
    keys = [k for k in nums if nums[k]["n"]]
    axes[2].bar(range(len(keys)), [nums[k]["mean"] for k in keys], yerr=[nums[k]["std"] for k in keys], capsize=3,
                color=[f"C{i}" for i in range(len(keys))])
    axes[2].set_xticks(range(len(keys)), [k.replace("_", " ") for k in keys], rotation=30, fontsize=8)
    axes[2].set_title("Group III (disjoint classes, prototype similarity)")
    for ax in axes:
        ax.axhline(1 / preset["n_way"], color="grey", linewidth=0.8)
    save(fig, "fig_groups.png")

    # Study: accuracy over iterations and weight change, self-supervised vs supervised
    curves = {"self-supervised": _pick(rows, group="I", method="ifp", monitor=True),
              "supervised": _pick(rows, group="study", monitor=True)}
    if any(curves.values()):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for i, (label, sel) in enumerate(curves.items()):
            if not sel:
                continue
            it = np.array(sel[0]["curve"]["iteration"])
            acc = np.array([r["curve"]["accuracy"] for r in sel])
            a1.plot(it, acc.mean(0), color=f"C{i}", label=label)
            a1.fill_between(it, acc.mean(0) - acc.std(0), acc.mean(0) + acc.std(0), color=f"C{i}", alpha=0.2)
            wc_it = [w["iteration"] for w in sel[0]["weight_change"]]
            wc = np.array([[np.mean(list(w["change"].values())) for w in r["weight_change"]] for r in sel])
            a2.plot(wc_it, wc.mean(0), color=f"C{i}", label=label)
            a2.fill_between(wc_it, wc.mean(0) - wc.std(0), wc.mean(0) + wc.std(0), color=f"C{i}", alpha=0.2)
        a1.set_xlabel("IFP iteration")
        a1.set_ylabel("held-out accuracy")
        a1.set_title("IFP from self-supervised vs. supervised (Fig. 1)")
        a2.set_xlabel("IFP iteration")
        a2.set_ylabel(f"mean |Δw| over {preset['monitor_every']} iterations")
        a2.set_title("Layer-averaged weight change (Fig. 2)")
        for ax in (a1, a2):
            ax.legend()
        save(fig, "fig_study_backbones.png")

    if study_out.get("iou"):
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.8))
        cs = sorted(study_out["iou"], key=int)
        groups = list(study_out["iou"][cs[0]])
        for i, g in enumerate(groups):
            a1.plot([int(c) for c in cs], [study_out["iou"][c][g] for c in cs], marker="o", label=g,
                    color=plt.cm.viridis(i / max(1, len(groups) - 1)))
        a1.set_xticks([int(c) for c in cs])
        a1.set_xlabel("shared classes c")
        a1.set_ylabel("IoU with the test task's selection")
        a1.set_title("IoU per group vs. task similarity (Fig. 3)")
        a1.legend(fontsize=6, ncol=2)
        per = np.array([rec[g] for rec in study_out["recall"].values() for g in rec], dtype=float)
        a = np.arange(1, per.shape[1] + 1)
        a2.errorbar(a, np.nanmean(per, 0), yerr=np.nanstd(per, 0), marker="o", capsize=3)
        a2.set_xticks(a)
        a2.set_xlabel("votes a (of the neighbours)")
        a2.set_ylabel("b(a)")
        a2.set_title("Vote recall b(a) over groups and c (Fig. 4 left)")
        width = 0.8 / len(cs)
        for i, c in enumerate(cs):
            d = study_out["covered"][c]
            a3.bar(np.arange(len(d)) + i * width, d, width=width, label=f"c={c}")
        a3.set_xticks(np.arange(len(study_out["covered"][cs[0]])) + 0.4 - width / 2,
                      range(len(study_out["covered"][cs[0]])))
        a3.set_xlabel("votes a")
        a3.set_ylabel("d(a): target channels per group")
        a3.set_title("Covered channels d(a) (Fig. 4 right)")
        a3.legend()
        save(fig, "fig_study_overlap.png")

    eff = numbers["efficiency"]
    if eff:
        labels = list(eff)
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
        for ax, (key, title) in zip(axes, [("accuracy", "accuracy"), ("train_flops", "training FLOPs"),
                                           ("fit_time_s", "wall time (s)"), ("peak_memory_mb", "peak memory (MiB)")]):
            ax.bar(range(len(labels)), [eff[label][key] for label in labels],
                   color=[f"C{i}" for i in range(len(labels))])
            ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
            ax.set_title(title)
            if key == "train_flops":
                ax.set_yscale("log")
        save(fig, "fig_efficiency.png")
    return written


# -- entry ---------------------------------------------------------------------------------------

def write_report(results: Path, cache: Path | None = None) -> dict:
    results = Path(results)
    plan_path = results / "plan.json"
    if not plan_path.is_file():
        raise SystemExit(f"no plan.json in {results}: run the reproduction first")
    plan = json.loads(plan_path.read_text())
    preset = plan["preset"]
    all_rows = load_rows(results)
    rows = [r for r in all_rows.values() if r.get("stage") != "tune"]
    numbers = {}
    tables = {}
    tables["I"], numbers["I"] = group_table(rows, "I", preset)
    tables["II"], numbers["II"] = group_table(rows, "II", preset)
    tables["III"], numbers["III"] = group3_table(rows, preset)
    tables["efficiency"], numbers["efficiency"] = efficiency_table(rows, preset)
    bank = json.loads((results / "bank.json").read_text()) if (results / "bank.json").is_file() else {}
    selections = bank_selections(results, cache)
    study_out = study(rows, plan, selections)
    if study_out:
        study_out["bank_pairs"] = bank_pair_overlap(selections, bank.get("classes", {}))
    backbones = backbone_comparison(rows, preset)
    checks = claims(rows, study_out, preset)
    figs = figures(results, rows, numbers, study_out, preset)

    with (results / "cells.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SCALARS + ["stage"], extrasaction="ignore")
        writer.writeheader()
        for r in all_rows.values():
            writer.writerow(r)
    bank_acc = [a for a in bank.get("test_accuracy", []) if a is not None]
    _write_json(results / "results.json", {
        "plan": plan, "numbers": numbers, "study": study_out,
        "backbones": {str(k): v for k, v in backbones.items()},
        "claims": checks,
        "bank": {"n_tasks": bank.get("n_tasks"), "mean_test_accuracy": float(np.mean(bank_acc)) if bank_acc else None},
        "n_cells": {"done": len(rows), "planned": plan.get("n_cells")}})
    diagnostics = [(results / name).read_text() for name in DIAGNOSTICS if (results / name).is_file()]
    (results / "summary.md").write_text(_markdown(plan, tables, checks, backbones, study_out, bank_acc, figs,
                                                  len(rows), diagnostics))
    return numbers


_VERDICT_MD = {"holds": "holds", "fails": "**fails**", "undecided": "*undecided*"}


def _markdown(plan, tables, checks, backbones, study_out, bank_acc, figs, n_done, diagnostics=()) -> str:
    p = plan["preset"]
    lr = plan["learning_rates"]
    J = p["iterations"]
    lines = [f"# Reproduction, preset `{p['name']}`", "",
             f"{p['n_way']}-way tasks from {p['dataset']}; {p['n_test_tasks']} test tasks, {p['n_test_per_class']} "
             f"held-out images per class (never used for training or for any choice); backbones "
             f"`{plan['backbones']['ssl']}` (self-supervised) and `{plan['backbones']['sup']}` (supervised), "
             f"CIFAR ResNet-18 width {p['width']}; pruning ratio r = {p['pruning_ratio']}; batch {p['batch_size']}; "
             f"head {p['head_epochs']} epochs (L-BFGS on frozen features); SGD momentum 0.9, weight decay 5e-4, "
             f"cosine learning rate; IFP prunes at h = {p['prune_every_fraction']} J; MVP temperature "
             f"{p['temperature']}; BatchNorm recalibrated on the training images after fitting.", "",
             f"Bank: {len(bank_acc)} training tasks, {max(p['neighbors'])} per test task and shared-class "
             f"count c in {list(p['shared'])}, each pruned by IFP with J = {p['bank_iterations']} "
             f"(their own held-out accuracy: mean {np.mean(bank_acc) if bank_acc else float('nan'):.3f}).", "",
             f"Learning rates, chosen on {p['n_validation_tasks']} validation tasks carved from the training pools "
             f"(mean validation accuracy per grid value): IFP all data {lr['ifp_full']:g}, IFP "
             f"{p['limited_per_class']} images/class {lr['ifp_limited']:g}, MVP and uniform {lr['oneshot']:g}. "
             f"`{json.dumps(lr['validation_accuracy'])}`", "",
             f"Cells finished: {n_done} of {plan.get('n_cells')}. Accuracy: mean (std) over test tasks.", "",
             "## Claims of the paper at this preset", "",
             "Accuracy claims are judged on the paired per-task differences a - b (the same test tasks for both "
             "methods): the verdict is *holds* when the 95% bootstrap interval of the mean difference lies wholly on "
             "the claimed side of the margin, *fails* when wholly on the other side, else *undecided*; "
             "wins/ties/losses count the tasks and the sign test is exact and two-sided.", "",
             "| claim | verdict | numbers |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {_VERDICT_MD[c['verdict']]} | {c['evidence']} |" for c in checks]
    counts = {v: sum(c["verdict"] == v for c in checks) for v in _VERDICT_MD}
    lines += ["", f"{counts['holds']} claims hold, {counts['fails']} fail, {counts['undecided']} cannot be decided "
              f"by these {p['n_test_tasks']} test tasks."]
    lines += ["", f"## Group I: all training images, MVP and uniform {J} iterations", "", tables["I"], "",
              f"## Group II: {p['limited_per_class']} training images per class", "", tables["II"], "",
              "## Group III: no test class in any voting task; neighbours by prototype similarity", "",
              tables["III"], "", "## Efficiency (Group I)", "", tables["efficiency"], "",
              "## Study: self-supervised vs. supervised backbone under IFP", "",
              "| IFP iterations | self-supervised | supervised | tasks where self-supervised >= supervised |",
              "|---|---|---|---|"]
    for m, b in backbones.items():
        lines.append(f"| {m * J} | {_fmt(b['ssl'])} | {_fmt(b['sup'])} | {b['ssl_wins']}/{b['n']} |")
    if study_out.get("iou"):
        cs = sorted(study_out["iou"], key=int)
        groups = list(study_out["iou"][cs[0]])
        lines += ["", f"## Study: IoU per group of the test task's IFP {study_out['target_multiple']}x selection "
                  "with its neighbours' selections", "", "| group | " + " | ".join(f"c = {c}" for c in cs) + " |",
                  "|---|" + "---|" * len(cs)]
        lines += [f"| {g} | " + " | ".join(f"{study_out['iou'][c][g]:.3f}" for c in cs) + " |" for g in groups]
        lines += ["", "d(a), mean over groups (channels of the target kept by exactly a neighbours): " + "; ".join(
            f"c={c}: " + " ".join(f"{v:.2f}" for v in study_out["covered"][c]) for c in cs)]
    pairs = study_out.get("bank_pairs") or {}
    if pairs.get("by_c"):
        cs = sorted(pairs["by_c"], key=int)
        lines += ["", f"## Study: IoU per group between bank task pairs, by shared classes c (J = {p['bank_iterations']})",
                  "", f"Every pair of bank tasks; c counts the classes the two tasks share "
                  f"({pairs['n_identical_pairs_left_out']} pairs with the same class set, the same task under two "
                  "ids, are left out). Pairs share tasks, so the intervals over pairs are optimistic.", "",
                  "| group | " + " | ".join(f"c = {c}" for c in cs) + " | two random subsets of those sizes |",
                  "|---|" + "---|" * (len(cs) + 1)]
        lines += [f"| {g} | " + " | ".join(f"{pairs['by_c'][c]['iou'][g]:.3f}" for c in cs) +
                  f" | {pairs['chance_iou'][g]:.3f} |" for g in pairs["groups"]]
        lines.append("| pairs | " + " | ".join(str(pairs["by_c"][c]["n_pairs"]) for c in cs) + " | |")
        if pairs.get("deep_by_c"):
            lines.append(f"| mean of {', '.join(pairs['deep'])} [95% CI over pairs] | " + " | ".join(
                f"{pairs['deep_by_c'][c]['mean']:.3f} [{pairs['deep_by_c'][c]['ci'][0]:.3f}, "
                f"{pairs['deep_by_c'][c]['ci'][1]:.3f}]" if c in pairs["deep_by_c"] else "" for c in cs) +
                         f" | {np.mean([pairs['chance_iou'][g] for g in pairs['deep']]):.3f} |")
    for text in diagnostics:
        lines += [""] + [("#" + line if line.startswith("#") else line) for line in text.rstrip().splitlines()]
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    v = plan["versions"]
    lines += ["", f"Versions: python {v['python']}, torch {v['torch']}, torchvision {v['torchvision']}, skorch "
              f"{v['skorch']}, scikit-learn {v['scikit-learn']}, metaprune {v['metaprune']} (commit "
              f"{(v['git_commit'] or 'unknown')[:10]}), device {plan['device']}, {v['cpu_count']} CPUs.", ""]
    return "\n".join(lines)
