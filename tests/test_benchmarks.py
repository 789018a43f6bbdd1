"""Every script under benchmarks/ runs (tiny arguments) and prints the figures it exists for, each a number
where BENCHMARKS.md quotes one: what BENCHMARKS.md quotes cannot rot unnoticed.

The scripts run two at a time (their figures are not checked here, only that they are printed): the ones that
use Ray through ``raynas.cluster.connect`` one after another in this session's Ray, as on a running cluster; the
others, which use no Ray or start their own, beside them."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import joining_env

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))
LIBRARY = {"plain_loop.py"}  # imported by the scripts, run through them
SESSION_RAY = {"hr_nas_shrinking.py", "paper_claim.py", "ssr_regularizers.py"}  # join RAY_ADDRESS's Ray


def tiny_arguments(script: str, supernet_run: str, tmp: Path) -> list[str]:
    return {
        "bench_data_loading.py": ["--images", "4", "--repeats", "1"],
        "bn_recalibration.py": [supernet_run, "--calibration", "2", "--val", "2"],
        "cost_model_speed.py": ["--archs", "20", "--counted", "1", "--resolution", "64"],
        "gpu_check.py": ["--out", str(tmp / "gpu")],  # here: "no GPU: skipped" (tests/test_gpu_path.py)
        "elastic_overhead.py": ["--batch", "2", "--resolution", "128", "--random", "0", "--repeats", "1"],
        "hr_nas_shrinking.py": ["--data", "synthetic", "--penalties", "5", "--seeds", "1", "--epochs", "1",
                                "--steps", "1", "--interval", "1", "--out", str(tmp / "hr_nas")],
        "paper_claim.py": [supernet_run, "--budget", "2", "--seeds", "1", "--epochs", "1", "--steps", "1",
                           "--val-images", "4", "--finetune-size", "64", "64", "--out", str(tmp / "claim")],
        "sandwich_recipe.py": ["--variants", "alone,sandwich", "--init", "imagenet", "--steps", "2", "--threads", "1",
                               "--val-images", "4", "--test-images", "4"],
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


NUMBER = r"[-+]?\d[\d,]*\.?\d*"
# what each script must print: its table's rows or its summary line, with numbers in them
EXPECTED = {
    "bench_data_loading.py": [rf"resize on load, cached \(2nd epoch on\)\s+{NUMBER} /s\s+×\s+{NUMBER}"],
    "bn_recalibration.py": [rf"checkpoint_epoch_0002\s+16\s+{NUMBER}(\s+{NUMBER}){{6}}$"],
    "cost_model_speed.py": [rf"^space\.cost\s+{NUMBER} archs/s", rf"analytic / counted\s+{NUMBER}x faster"],
    "elastic_overhead.py": [rf"^\| min \| {NUMBER} \|", rf"^\| max \| {NUMBER} \|", rf"worst training ratio {NUMBER}"],
    "gpu_check.py": [r"^gpu-check: no GPU: skipped"],
    "hr_nas_shrinking.py": [rf"^\s+5\.000\s+0\s+{NUMBER}\s+{NUMBER}", rf"shrinking {NUMBER} \+- nan vs random at equal FLOPs",
                            rf"^\s*\+Transformer\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"],
    "latency.py": [rf"^\| topformer-{size} \| {NUMBER} \|" for size in "tsb"],
    "paper_claim.py": [rf"paired difference \(cds - \S+\): {NUMBER} \+- "],
    "sandwich_recipe.py": [rf"imagenet\s+none\s+{variant}\s+0\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"
                           for variant in ("alone", "sandwich")],
    # the table's optimum: NAS-Bench-201's best CIFAR-10 test accuracy, 94.37 (Dong & Yang 2020, Table 5)
    "searchers_nb201.py": [r"optimum accuracy = 94\.37\d \(objective, unconstrained\)",
                           rf"^cds\s+1\s+{NUMBER} \[1 seed\]", rf"^random\s+1\s+{NUMBER} \[1 seed\]"],
    "ssr_regularizers.py": [rf"^\| {name} \| .* \| {NUMBER} ± {NUMBER} \|" for name in ("ssr", "none")],
    "subnet_eval_time.py": [rf"mean \w+: {NUMBER} s"],
    "sweep_scaling.py": [rf"^\| all runs at once, 2 slots \| 2 \| 10 \| {NUMBER} \|"],
    "training_throughput.py": [rf"^1 worker\(s\): {NUMBER} images/s"],
    "tune_overhead.py": [rf"^ratio Tune / plain loop: {NUMBER}x"],
}


def test_every_script_is_covered():
    assert set(EXPECTED) == set(SCRIPTS) - LIBRARY
    assert set(SCRIPTS) - LIBRARY == {
        "bench_data_loading.py", "bn_recalibration.py", "cost_model_speed.py", "elastic_overhead.py", "gpu_check.py",
        "hr_nas_shrinking.py", "latency.py", "paper_claim.py", "sandwich_recipe.py",
        "searchers_nb201.py", "ssr_regularizers.py", "subnet_eval_time.py", "sweep_scaling.py",
        "training_throughput.py", "tune_overhead.py"}


@pytest.fixture(scope="module")
def script_runs(request, tiny_supernet, camvid_dir, nb201_table, tmp_path_factory) -> dict:
    """Every script this session's tests ask about, started on one of two lanes (see the module doc): its
    ``CompletedProcess`` to come."""
    env = joining_env()
    env_alone = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    tmp = tmp_path_factory.mktemp("benchmarks")

    def run(script: str) -> subprocess.CompletedProcess:
        folder = tmp / script[:-3]
        folder.mkdir()
        argv = [sys.executable, f"benchmarks/{script}", *tiny_arguments(script, tiny_supernet.run_dir, folder)]
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                              env=env if script in SESSION_RAY else env_alone)

    lanes = {True: ThreadPoolExecutor(1), False: ThreadPoolExecutor(1)}
    asked = sorted({item.callspec.params["script"] for item in request.session.items
                    if isinstance(item, pytest.Function) and item.originalname == "test_script_runs"})
    runs = {script: lanes[script in SESSION_RAY].submit(run, script) for script in asked}
    yield runs
    for lane in lanes.values():
        lane.shutdown(cancel_futures=True)


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - LIBRARY))
def test_script_runs(script, script_runs):
    run = script_runs[script].result()
    assert run.returncode == 0, run.stderr[-3000:]
    for pattern in EXPECTED[script]:
        assert re.search(pattern, run.stdout, re.MULTILINE), f"{pattern!r} not in:\n{run.stdout[-3000:]}"
