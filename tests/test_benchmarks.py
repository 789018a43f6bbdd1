"""Every script under benchmarks/ runs (tiny arguments): what BENCHMARKS.md quotes cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))
LIBRARY = {"plain_loop.py"}  # imported by the scripts, run through them
SLOW = {"paper_claim.py"}  # four Ray Train runs: in the slow suite


def tiny_arguments(script: str, supernet_run: str, tmp: Path) -> list[str]:
    return {
        "bench_data_loading.py": ["--images", "4", "--repeats", "1"],
        "bn_recalibration.py": [supernet_run, "--calibration", "2", "--val", "2"],
        "cost_model_speed.py": ["--archs", "20", "--counted", "1", "--resolution", "64"],
        "gpu_check.py": ["--out", str(tmp / "gpu")],  # here: "no GPU: skipped" (tests/test_gpu_path.py)
        "elastic_overhead.py": ["--batch", "2", "--resolution", "128", "--random", "0", "--repeats", "1"],
        "hr_nas_shrinking.py": ["--data", "synthetic", "--penalties", "5", "--seeds", "1", "--epochs", "1",
                                "--steps", "1", "--interval", "1", "--out", str(tmp / "hr_nas")],
        "paper_claim.py": [supernet_run, "--budget", "2", "--seeds", "2", "--epochs", "1", "--steps", "1",
                           "--val-images", "4", "--finetune-size", "64", "64", "--out", str(tmp / "claim")],
        "sandwich_recipe.py": ["--variants", "alone,sandwich", "--init", "imagenet,imagenet-naive", "--steps", "2",
                               "--threads", "1", "--val-images", "4"],
        "latency.py": ["--resolution", "64", "--warmup", "0", "--repeats", "2", "--subnets", "5",
                       "--model-resolution", "32", "--model-repeats", "2", "--splits", "1"],
        "searchers_nb201.py": ["--engine", "loop", "--seeds", "1", "--budget", "5", "--searchers", "cds,random",
                               "--task", "unconstrained", "--task", "lat_gold_6226_ms<=8"],
        "ssr_regularizers.py": ["--data", "synthetic", "--regularizers", "ssr,none", "--seeds", "1", "--epochs", "1",
                                "--steps", "1", "--out", str(tmp / "ssr")],
        "sweep_scaling.py": ["--slots", "2", "--eval-seconds", "0.2", "--budget", "2", "--seeds", "1", "--no-serial"],
        "subnet_eval_time.py": ["--checkpoint", supernet_run, "--archs", "1", "--calibration", "2", "--val", "2"],
        "training_throughput.py": ["--workers", "1", "--steps", "2", "--batch", "2", "--crop", "64"],
        "tune_overhead.py": ["--seeds", "1", "--budget", "5"],
    }[script]


def test_every_script_is_covered():
    assert set(SCRIPTS) - LIBRARY == {
        "bench_data_loading.py", "bn_recalibration.py", "cost_model_speed.py", "elastic_overhead.py", "gpu_check.py",
        "hr_nas_shrinking.py", "latency.py", "paper_claim.py", "sandwich_recipe.py",
        "searchers_nb201.py", "ssr_regularizers.py", "subnet_eval_time.py", "sweep_scaling.py",
        "training_throughput.py", "tune_overhead.py"}


@pytest.mark.parametrize("script", [pytest.param(s, marks=[pytest.mark.slow] if s in SLOW else [])
                                    for s in sorted(set(SCRIPTS) - LIBRARY)])
def test_script_runs(script, tiny_supernet, camvid_dir, nb201_table, tmp_path):
    run_dir = tiny_supernet.run_dir
    run = subprocess.run([sys.executable, f"benchmarks/{script}", *tiny_arguments(script, run_dir, tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip()
