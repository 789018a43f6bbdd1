"""The GPU path end to end at tiny sizes: what a session with a lent GPU runs first (``make gpu-check``).

    python benchmarks/gpu_check.py [--out DIR] [--json PATH]

Where torch sees no GPU it prints ``no GPU: skipped`` and exits 0. On a GPU:

1. ``step time``: sandwich steps of the supernet on the GPU, fp32 against bf16 autocast (side by side);
2. ``train``: a tiny supernet with ``scaling.use_gpu`` (NCCL, bf16 by default), one sandwich epoch;
3. ``resume``: a second run resumed from it to epoch 2 (optimizer state loaded onto the GPU);
   ``bf16 scoring``: its max and min sub-networks scored in fp32 and under bf16 autocast;
4. ``sweep GPU 0.5`` / ``sweep GPU 1.0``: two searchers (cds, random), trials asking for half a GPU, then a
   whole one, each trial's latency measured with ONNX Runtime (the sub-network exported from the GPU);
5. ``finetune``: the winner fine-tuned on the GPU, exported to ONNX and scored on the file.

One line per step: its name, the device it ran on, seconds and what it measured; ``--json`` writes them.
``--cpu`` rehearses every step on the CPU, without GPU resources (a test runs it: the script is known to
work before a GPU session spends device time on it).
Data: CamVid from ``$RAYNAS_DATA`` or ``../shared/data`` when present, else the generated set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def data_section(size: int) -> dict:
    from raynas.paths import shared_data_dir

    camvid = shared_data_dir() / "camvid"
    if camvid.is_dir():
        return {"dataset": "camvid", "root": str(camvid), "base_size": 96, "cache": True, "crop_size": size,
                "scale_range": [0.75, 1.25]}
    return {"dataset": "synthetic", "crop_size": size, "synthetic": {"length": 64, "val_length": 16, "size": size,
                                                                     "num_classes": 6}}


def step_times(device: str, steps: int, batch: int, size: int = 128) -> dict:
    """Seconds per sandwich step (max + 2 random + min) of the default supernet on ``device``, fp32 and bf16."""
    import torch.nn.functional as F

    from raynas.devices import synchronize
    from raynas.training_config import TrainingSection
    from search_spaces import get_space
    from trainables.sandwich import sandwich, sandwich_step

    space = get_space("efficient_topformer")
    net = space.build_supernet(11).to(device).train()
    image = torch.randn(batch, 3, size, size, device=device)
    label = torch.randint(0, 11, (batch, size, size), device=device)
    times = {}
    for precision in ("fp32", "bf16"):
        training = TrainingSection(precision=precision)
        for i in range(steps + 2):  # two warm-up steps
            if i == 2:
                synchronize(device)
                started = time.perf_counter()
            net.zero_grad(set_to_none=True)
            sandwich_step(net, net, sandwich(space, i, 0, 2), image, label, F.cross_entropy, training)
        synchronize(device)
        times[precision] = (time.perf_counter() - started) / steps
    return {"step_s_fp32": times["fp32"], "step_s_bf16": times["bf16"], "bf16_speedup": times["fp32"] / times["bf16"],
            "batch": batch, "size": size}


def precision_scores(checkpoint: str, device: str) -> dict:
    """The trained supernet's max and min sub-networks scored (BN recalibrated) in fp32 and under bf16."""
    from search_spaces import get_space
    from trainables.checkpoints import read_meta
    from trainables.subnet_evaluation import SubnetEvaluation, score_subnet

    meta = read_meta(checkpoint)
    space = get_space(meta["space"], **meta["space_options"])
    scores = {}
    for precision in ("fp32", "bf16"):
        evaluation = SubnetEvaluation(calibration_images=16, val_images=32, resolution=128, device=device,
                                      precision=precision)
        for which, arch in (("max", space.max_arch()), ("min", space.min_arch())):
            scores[f"miou_{which}_{precision}"] = score_subnet(arch, checkpoint, evaluation)["miou"]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the step lines here as JSON")
    parser.add_argument("--cpu", action="store_true",
                        help="rehearse every step on the CPU (no GPU asked for): checks this script itself")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        if torch.version.cuda is None and shutil.which("nvidia-smi"):
            print(f"gpu-check: a GPU is here (nvidia-smi) but torch {torch.__version__} is a CPU build: install the "
                  f"CUDA build (pip install torch=={torch.__version__.split('+')[0]} --index-url "
                  f"https://pypi.org/simple) or run with a Python that has it (make gpu-check GPU_PY=python3)")
            return 1
        print(f"gpu-check: no GPU: skipped (torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        return 0
    import pandas as pd
    import ray

    from raynas.config import SweepConfig
    from raynas.progress import Progress
    from raynas.sweep import run_sweep
    from trainables.finetune import FinetunePlan, FinetuneSettings
    from trainables.supernet_training import train_supernet

    gpu = not args.cpu
    device = "cuda" if gpu else "cpu"
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_check_"))
    out.mkdir(parents=True, exist_ok=True)
    quiet = Progress(stream=open(os.devnull, "w"))
    lines: list[dict] = []

    def step(name: str, started: float, **facts) -> None:
        line = {"step": name, "device": device, "seconds": round(time.perf_counter() - started, 2), **facts}
        lines.append(line)
        print(f"gpu-check: {name:<15} {device:<5} {line['seconds']:7.1f} s  "
              + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in facts.items()),
              flush=True)

    name = torch.cuda.get_device_name(0) if gpu else "CPU rehearsal"
    print(f"gpu-check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    started = time.perf_counter()
    step("step time", started, **step_times(device, steps=10 if gpu else 1, batch=8 if gpu else 2))

    ray.init(address="local", num_cpus=min(os.cpu_count() or 4, 8), num_gpus=1 if gpu else 0,
             include_dashboard=False, log_to_driver=False)
    worker = {"num_workers": 1, "use_gpu": gpu, "resources_per_worker": {"CPU": 1, **({"GPU": 1} if gpu else {})}}
    steps = 20 if gpu else 2
    config = {"space_options": {"head_channels": 32}, "data": data_section(96),
              "training": {"epochs": 1, "steps_per_epoch": steps, "batch_size": 8, "lr": 5e-3, "warmup_steps": 2},
              "evaluation": {"calibration_images": 16, "val_images": 16, "batch_size": 8},
              "scaling": worker, "run": {"storage_path": str(out / "supernet"), "name": "epoch1"}}
    started = time.perf_counter()
    first = train_supernet(config, progress=quiet)
    assert first.error is None, first.error
    history = json.loads((Path(first.checkpoint.path) / "meta.json").read_text())["history"]
    step("train", started, epochs=1, val_miou_max=history[-1]["val_miou_max"],
         images_per_s=history[-1]["images_per_s"])

    started = time.perf_counter()
    config["training"]["epochs"], config["run"]["name"] = 2, "epoch2"
    resumed = train_supernet(config, resume=first.checkpoint.path, progress=quiet)
    assert resumed.error is None, resumed.error
    history = json.loads((Path(resumed.checkpoint.path) / "meta.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2], history
    step("resume", started, epochs=2, val_miou_max=history[-1]["val_miou_max"])

    started = time.perf_counter()
    step("bf16 scoring", started, **precision_scores(resumed.checkpoint.path, device))

    sweeps = {}
    for share in (0.5, 1.0) if gpu else (0,):
        sweep_dir = out / f"sweep_gpu_{share}"
        started = time.perf_counter()
        parquet = run_sweep(SweepConfig.load({
            "benchmark": "supernet", "supernet": resumed.checkpoint.path, "searchers": ["cds", "random"],
            "budget": 6 if gpu else 2, "out": str(sweep_dir), "searcher_options": {"cds": {"start_samples": 2}},
            "trial_resources": {"CPU": 1, **({"GPU": share} if share else {})},
            "evaluation": {"calibration_images": 8, "val_images": 16, "resolution": 128},
            "latency": {"resolution": 64, "warmup": 1, "repeats": 3, "cache_dir": str(out / "latency")}}),
            progress=quiet)
        trials = pd.read_parquet(parquet)
        assert set(trials["device"]) == {device}, set(trials["device"])
        assert trials["latency_ms"].notna().all()
        sweeps[share] = sweep_dir
        step(f"sweep GPU {share}" if share else "sweep", started, trials=len(trials), eval_s_mean=float(trials["eval_s"].mean()),
             best_miou=float(trials["miou"].max()))

    started = time.perf_counter()
    settings = FinetuneSettings.load({"recipe": {"epochs": 1, "steps_per_epoch": steps, "batch_size": 8, "lr": 5e-3},
                                      "scaling": worker, "evaluation": {"calibration_images": 8, "val_images": 16},
                                      "out": str(out / "models")})
    (metrics,) = FinetunePlan(sweeps[min(sweeps)], settings).run(quiet)
    assert (out / "models" / metrics["arch_id"] / "model.onnx").is_file()
    step("finetune", started, val_miou_onnx=metrics["val_miou"], val_miou_torch=metrics["val_miou_torch"],
         latency_ms=metrics["latency"]["latency_ms"])
    ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "steps": lines}, indent=1))
    print(f"gpu-check: passed on {name}; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
