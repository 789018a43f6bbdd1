"""The GPU path, checked on CPUs: device choice with CUDA and Ray's GPU ids patched, the Ray Train wiring,
the order in which a worker places, builds and resumes its optimizer (a dtype change stands in for a move to
the GPU), latency exports that always trace a CPU model, bf16 autocast, SyncBN's default, and the GPU check
that skips here. (cluster.yaml against the cluster example: tests/test_cluster_yaml.py.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import ray
import torch
import torch.nn.functional as F

from raynas.devices import autocast, autocast_dtype, require_cuda, torch_device
from raynas.errors import UserError
from raynas.latency.onnx_timing import export_onnx
from raynas.paths import REPO_ROOT
from raynas.training_config import ScalingSection, SupernetTrainingConfig, TrainingSection
from search_spaces import get_space


@pytest.fixture
def gpu_given(monkeypatch):
    """This process as a Tune trial or Train worker that Ray gave GPU 0, on a machine where CUDA works."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])


def test_auto_is_the_gpu_ray_gave_the_process(gpu_given, monkeypatch):
    assert torch_device("auto") == "cuda" and torch_device("cuda") == "cuda" and torch_device("cpu") == "cpu"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])  # a CPU trial on a GPU node: the GPU is another's
    assert torch_device("auto") == "cpu"


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("auto") == "cpu"


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UserError, match=r"evaluation\.device: 'cuda' but this torch .* is a CPU build; use 'auto'"):
        torch_device("cuda", "evaluation.device")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(UserError, match=r"'cuda' but no GPU is visible to this process"):
        torch_device("cuda", "evaluation.device")
    with pytest.raises(UserError, match=r"device: 'tpu' is not allowed; allowed values: \['auto', 'cpu', 'cuda'\]"):
        torch_device("tpu")


@pytest.mark.parametrize("scaling, runs", [
    ({"num_workers": 2}, 8),  # 1 CPU a worker: 16 CPUs hold 8 runs of 2
    ({"num_workers": 2, "resources_per_worker": {"CPU": 3}}, 2),
    ({"num_workers": 1, "use_gpu": True}, 4),  # 1 GPU (no CPU) a worker: the 4 GPUs decide
    ({"num_workers": 2, "use_gpu": True, "resources_per_worker": {"CPU": 2}}, 2),  # + 1 GPU each
    ({"num_workers": 8, "use_gpu": True}, 1),  # more than the cluster: still one, which waits for its workers
])
def test_runs_at_once_counts_every_resource_a_run_reserves(monkeypatch, scaling, runs):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 4.0, "memory": 6e10})
    section = ScalingSection(**scaling)
    # what each worker reserves: as Ray Train's own ScalingConfig works it out
    assert section.worker_resources() == section.trainer_configs()[1]._resources_per_worker_not_none
    assert section.runs_at_once() == runs
    assert section.runs_at_once(limit=3) == 3  # a setting's limit, where one is given


def test_a_sub_network_evaluation_and_a_search_that_trains_run_where_the_trial_was_given_a_gpu(gpu_given, monkeypatch):
    from trainables.ssr_search import SSRObjective, SSRSettings
    from trainables.subnet_evaluation import SubnetEvaluation

    assert SubnetEvaluation().torch_device() == "cuda"
    assert SubnetEvaluation(device="cpu").torch_device() == "cpu"

    class Started(Exception):
        pass

    def start(self, hyperparameters, device):
        raise Started(device)

    monkeypatch.setattr(SSRObjective, "start", start)
    with pytest.raises(Started, match="^cuda$"):  # not a hard-coded "cpu"
        SSRObjective(SSRSettings()).evaluate(SSRObjective(SSRSettings()).space.max_arch())


def test_a_sweep_asking_cuda_without_gpu_resources_fails_before_anything_runs(tiny_supernet, tmp_path):
    from raynas.config import SweepConfig
    from raynas.sweep import SweepPlan

    def plan(**fields):
        return SweepPlan(SweepConfig.load({"benchmark": "supernet", "supernet": tiny_supernet.checkpoint,
                                           "out": str(tmp_path / "s"), "evaluation": {"device": "cuda"}, **fields}))

    with pytest.raises(UserError, match=r"sweep\.evaluation\.device: 'cuda' but a trial asks for \{'CPU': 1\}, no GPU"):
        plan().preflight()
    plan(trial_resources={"CPU": 1, "GPU": 0.5}).preflight()


def test_ray_train_is_wired_for_nccl_on_gpus_and_gloo_on_cpus():
    torch_config, scaling = ScalingSection(num_workers=8, use_gpu=True,
                                           resources_per_worker={"CPU": 8, "GPU": 1}).trainer_configs()
    assert torch_config.backend == "nccl"
    assert (scaling.num_workers, scaling.use_gpu, scaling.resources_per_worker) == (8, True, {"CPU": 8, "GPU": 1})
    torch_config, scaling = ScalingSection(num_workers=2).trainer_configs()
    assert torch_config.backend == "gloo" and scaling.use_gpu is False
    with pytest.raises(UserError, match=r"scaling\.resources_per_worker: asks for GPU: 1 while scaling\.use_gpu "
                                        r"is false"):
        SupernetTrainingConfig.load({"scaling": {"resources_per_worker": {"CPU": 2, "GPU": 1}}})


def _small_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))


def _trained_checkpoint(directory):
    """A checkpoint of a small model after two AdamW steps (fp32, CPU), as a training loop writes one."""
    from trainables.checkpoints import write_checkpoint
    from trainables.training import optimizer_and_schedule

    torch.manual_seed(0)
    model = _small_model()
    optimizer, scheduler = optimizer_and_schedule(model, TrainingSection(), 10)
    for _ in range(2):
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    write_checkpoint(directory, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict()}, {"epoch": 1}, "state.pt")
    return model


def test_a_resumed_optimizer_lives_where_the_model_was_moved(tmp_path):
    from trainables.checkpoints import load_training_state
    from trainables.training import optimizer_and_schedule, training_state

    trained = _trained_checkpoint(tmp_path)
    model = _small_model()
    # float64 stands in for the GPU: a move that the optimizer's saved moments must follow
    optimizer, scheduler, meta = training_state(model, torch.float64, TrainingSection(), 10, tmp_path, "state.pt")
    assert meta == {"epoch": 1} and scheduler.last_epoch == 2
    moments = [state["exp_avg"] for state in optimizer.state.values()]
    assert len(moments) == len(list(model.parameters()))
    assert all(m.dtype == torch.float64 for m in moments)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    torch.testing.assert_close(model[0].weight.float(), trained[0].weight)
    model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).square().mean().backward()
    optimizer.step()  # the step after a resume runs

    # the order training_state avoids: built and loaded first, moved after; the moments stay behind
    late = _small_model()
    optimizer, scheduler = optimizer_and_schedule(late, TrainingSection(), 10)
    load_training_state(tmp_path, late, optimizer, scheduler, "state.pt")
    late.to(torch.float64)
    assert all(state["exp_avg"].dtype == torch.float32 for state in optimizer.state.values())


def test_fresh_training_starts_with_the_model_moved_and_no_state(tmp_path):
    from trainables.training import training_state

    model = torch.nn.Linear(3, 2)
    optimizer, _, meta = training_state(model, torch.float64, TrainingSection(), 10, None, "state.pt")
    assert meta is None and not optimizer.state and model.weight.dtype == torch.float64


def test_a_latency_export_traces_a_cpu_fp32_copy_and_leaves_the_model_where_it_was():
    space = get_space("efficient_topformer", head_channels=16)
    # float64: not a CPU fp32 model, standing in for a sub-network extracted on the GPU
    sub = space.build_supernet(5).extract(space.min_arch()).to(torch.float64)
    onnx_bytes = export_onnx(sub, 64)
    assert next(sub.parameters()).dtype == torch.float64  # the caller's model is untouched
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    (logits,) = session.run(None, {"image": image})
    with torch.no_grad():
        expected = sub.eval()(torch.from_numpy(image).double()).float().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_the_latency_service_measures_a_sub_network_of_a_supernet_that_is_not_on_the_cpu(tmp_path):
    from raynas.latency.onnx_timing import LatencySettings
    from raynas.latency.service import LatencyService, arch_requests

    space = get_space("efficient_topformer", head_channels=16)
    supernet = space.build_supernet(5)
    extract = supernet.extract
    supernet.extract = lambda arch: extract(arch).to(torch.float64)  # as a supernet on the GPU extracts onto it
    settings = LatencySettings(resolution=32, warmup=0, repeats=2, cache_dir=str(tmp_path))
    (measured,) = LatencyService.from_settings(settings).measure(arch_requests(space, supernet, [space.min_arch()], 32))
    assert measured["latency_ms"] > 0


def test_precision_auto_is_bf16_on_a_gpu_and_fp32_on_a_cpu():
    assert autocast_dtype("cuda", "auto") is torch.bfloat16 and autocast_dtype("cpu", "auto") is None
    assert autocast_dtype("cuda", "fp32") is None and autocast_dtype("cpu", "bf16") is torch.bfloat16
    with pytest.raises(UserError, match=r"precision: 'fp16' is not allowed"):
        autocast_dtype("cuda", "fp16")
    with pytest.raises(UserError, match=r"training\.precision: 'fp16' is not allowed; allowed values: "
                                        r"\['auto', 'fp32', 'bf16'\]"):
        SupernetTrainingConfig.load({"training": {"precision": "fp16"}})


def test_a_bf16_sandwich_step_runs_its_convolutions_in_bf16_and_keeps_fp32_gradients():
    from trainables.sandwich import sandwich_step

    space = get_space("efficient_topformer", head_channels=16)
    net = space.build_supernet(5)
    dtypes = []
    hook = net.stem.conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    torch.manual_seed(0)
    image, label = torch.randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    archs = [space.max_arch(), space.min_arch()]
    losses = {}
    for precision in ("fp32", "bf16"):
        net.zero_grad()
        loss_max, loss_students = sandwich_step(net, net, archs, image, label, F.cross_entropy,
                                                TrainingSection(precision=precision))
        assert torch.is_tensor(loss_max) and not loss_max.requires_grad  # no host sync inside a step
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        losses[precision] = float(loss_max)
    hook.remove()
    assert dtypes == [torch.float32] * 2 + [torch.bfloat16] * 2
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_bf16_evaluation_runs_its_forward_passes_in_bf16():
    from trainables.recalibration import evaluate_arch

    space = get_space("efficient_topformer", head_channels=16)
    torch.manual_seed(0)
    supernet = space.build_supernet(5)
    batches = [(torch.randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))) for _ in range(2)]
    seen = []
    supernet.stem.conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    for precision in ("fp32", "bf16"):
        metric, _, _ = evaluate_arch(supernet, space.max_arch(), batches, batches, 5, 255, "cpu", precision)
        assert metric.matrix.sum() == 2 * 2 * 64 * 64  # every pixel scored
    # recalibration and scoring: 2 + 2 passes each, fp32 then bf16. (How close the scores are is a property of
    # a trained network: benchmarks/gpu_check.py scores one both ways.)
    assert seen == [torch.float32] * 4 + [torch.bfloat16] * 4
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_cpu_enabled()


@pytest.mark.parametrize("sync_bn, use_gpu, world, synced", [
    (None, True, 8, True), (None, True, 1, False), (None, False, 2, False), (True, False, 2, True),
    (False, True, 8, False)])
def test_sync_bn_is_on_by_default_for_several_gpu_workers(sync_bn, use_gpu, world, synced):
    from trainables.sandwich import uses_sync_bn

    assert uses_sync_bn(TrainingSection(sync_bn=sync_bn), ScalingSection(use_gpu=use_gpu), world) is synced


def test_loaders_pin_memory_where_cuda_is_used(monkeypatch):
    from trainables.training import batch_loader

    data = torch.utils.data.TensorDataset(torch.zeros(4, 1))
    assert not batch_loader(data, 2, 0).pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loader = batch_loader(data, 2, 1, shuffle=True)
    assert loader.pin_memory and loader.num_workers == 1 and loader.persistent_workers and loader.drop_last


def test_a_gpu_node_setup_stops_where_cuda_does_not_work():
    with pytest.raises(SystemExit, match=r"torch .* is a CPU build; install the CUDA build|finds no usable GPU"):
        require_cuda()


def test_make_gpu_check_skips_without_a_gpu():
    run = subprocess.run(["make", "-s", "gpu-check", f"GPU_PY={sys.executable}"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("gpu-check: no GPU: skipped")
