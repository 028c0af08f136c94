"""End to end on real data: MVP from a small bank beats the uniform baseline on new tasks."""

import numpy as np

from metaprune.demo import DemoConfig, format_table, run_demo


def test_mvp_beats_uniform_with_the_same_iterations_on_new_digit_tasks():
    cfg = DemoConfig(width=8, pretrain_epochs=8, n_bank_tasks=6, bank_iterations=60, n_test_tasks=3,
                     iterations=10, n_neighbors=3, methods=("mvp", "uniform"))
    result = run_demo(cfg, log=lambda *_: None)
    acc = {m: np.mean([r["accuracy"] for r in result["rows"] if r["method"] == m])
           for m in ("MVP (10 it)", "Uniform (10 it)")}
    assert acc["MVP (10 it)"] > acc["Uniform (10 it)"], format_table(result)
    assert acc["MVP (10 it)"] > 0.5  # chance is 0.2
    assert min(result["bank_accuracy"]) > 0.3
