"""Export a sub-network to ONNX (driver side, needs torch) and time it with
ONNX Runtime (device side, needs only onnxruntime and numpy).

The split lets ARM nodes run without torch: the candidate is exported where it
is built and only the ONNX bytes travel to the measuring node.
"""

from __future__ import annotations

import io
import os
import platform
import socket
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Sequence

import numpy as np
from pydantic import BeforeValidator, ConfigDict, Field

from raynas.errors import UserError
from raynas.settings import Section, Whole

OPSET = 17
RESOURCE = "arm"  # the Ray resource that nodes measuring latency carry


def input_size(resolution: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair of positive ints."""
    pair = (resolution, resolution) if isinstance(resolution, int) and not isinstance(resolution, bool) else tuple(resolution)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise UserError(f"resolution: must be a positive int or [height, width] of positive ints, got {resolution!r}")
    return pair


class TimingSettings(Section):
    """How a measurement is taken: ONNX Runtime threads, untimed warm-up runs and timed runs."""

    SECTION: ClassVar[str] = "latency"
    model_config = ConfigDict(frozen=True)

    threads: Whole(1) = 1
    warmup: Whole(0) = 3
    repeats: Whole(1) = 20

    def timing(self) -> "TimingSettings":
        """Only the timing fields (what a measuring actor needs)."""
        return TimingSettings(threads=self.threads, warmup=self.warmup, repeats=self.repeats)


def _input_size_or_none(value: Any) -> Any:
    try:
        return None if value is None else list(input_size(value))
    except UserError:
        raise ValueError("must be a positive int or [height, width] of positive ints") from None


class LatencySettings(TimingSettings):
    """The ``latency`` settings of a sweep or command: timing, where and at which input size.

    ``resolution``: the input side or ``[height, width]`` (None: the evaluation's);
    ``resource``: the Ray resource of the measuring nodes; ``cache_dir``: the
    measurement cache (put it on storage every node sees).
    """

    resolution: Annotated[Any, BeforeValidator(_input_size_or_none)] = None
    resource: str = RESOURCE
    cache_dir: Annotated[str, BeforeValidator(lambda v: str(Path(str(v)).expanduser().resolve()))] = \
        Field("~/.cache/raynas/latency", validate_default=True)  # the default expanded too, never a "~" folder


def export_onnx(model, resolution: int | Sequence[int], opset: int = OPSET, dynamic: bool = False,
                metadata: dict[str, str] | None = None) -> bytes:
    """One self-contained ONNX file (weights inside), input ``image`` and output ``logits``, traced at
    ``(1, 3, H, W)``: for that input size only, or with ``dynamic`` for any batch, height and width (the
    model's shape arithmetic is traced, not frozen); ``metadata``: the file's ``metadata_props``.

    What is traced is always an fp32 CPU model (what ONNX Runtime runs on a CPU): a model elsewhere (a
    sub-network extracted from a supernet on a GPU) is copied there, and left where it was."""
    import onnx
    import torch

    height, width = input_size(resolution)
    buffer = io.BytesIO()
    model = cpu_fp32(model)
    was_training = model.training
    model.eval()
    axes = {0: "batch", 2: "height", 3: "width"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            # shape tests in forward() are constants of the traced size (for `dynamic`, the traced shape
            # arithmetic follows the input)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, height, width),),
                buffer,
                dynamo=False,  # the torch.export path needs onnxscript
                external_data=False,
                opset_version=opset,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes} if dynamic else None,
            )
    finally:
        model.train(was_training)
    if not metadata:
        return buffer.getvalue()
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, metadata)
    return proto.SerializeToString()


def cpu_fp32(model):
    """``model`` itself when every parameter and buffer is an fp32 (or integer) CPU tensor, else an fp32 CPU copy."""
    import copy

    import torch

    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors):
        return model
    return copy.deepcopy(model).to("cpu", torch.float32)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (ARM: implementer/part), else platform."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    if "model name" in fields:
        return fields["model name"]
    if "CPU implementer" in fields:  # aarch64 Linux lists no model name
        return f"ARM implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return platform.processor() or platform.machine()


def device_facts(threads: int) -> dict[str, Any]:
    """What identifies the measuring device (and where it ran)."""
    import onnxruntime

    facts = {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "onnxruntime": onnxruntime.__version__,
        "threads": threads,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import ray

        if ray.is_initialized():
            facts["node_id"] = ray.get_runtime_context().get_node_id()
    except ImportError:  # ray is optional for in-process timing
        pass
    return facts


def device_key(facts: dict[str, Any]) -> str:
    """Cache key part naming a device class: same key, interchangeable latencies."""
    return f"{facts['machine']}|{facts['cpu_model']}|onnxruntime {facts['onnxruntime']}|threads {facts['threads']}"


def time_onnx(onnx_bytes: bytes, settings: TimingSettings = TimingSettings()) -> dict[str, Any]:
    """Time one ONNX model on this machine; the input shape is the model's own.

    Returns milliseconds per run (median, p90, IQR, std, min, mean over
    ``settings.repeats`` timed runs after ``settings.warmup`` untimed ones) and
    the seconds spent creating the session and running. With one thread the
    run executes on the calling thread, so ``latency_cpu_ms`` (median CPU time
    of that thread) is the latency without the time lost to other processes on
    a shared machine; with more threads it is None.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    session_s = time.perf_counter() - start

    (inp,) = session.get_inputs()
    if not all(isinstance(d, int) for d in inp.shape):
        raise UserError(f"ONNX input {inp.name!r} must have a fixed shape, got {inp.shape}")
    feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape, dtype=np.float32)}
    start = time.perf_counter()
    for _ in range(settings.warmup):
        session.run(None, feed)
    times, cpu_times = np.empty(settings.repeats), np.empty(settings.repeats)
    for i in range(settings.repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        session.run(None, feed)
        times[i], cpu_times[i] = time.perf_counter() - t0, time.thread_time() - c0
    runs_s = time.perf_counter() - start
    ms = times * 1e3
    q25, median, q75, p90 = np.percentile(ms, [25, 50, 75, 90])
    return {
        "latency_ms": float(median),
        "latency_p90_ms": float(p90),
        "latency_iqr_ms": float(q75 - q25),
        "latency_std_ms": float(ms.std()),
        "latency_min_ms": float(ms.min()),
        "latency_mean_ms": float(ms.mean()),
        "latency_cpu_ms": float(np.median(cpu_times) * 1e3) if settings.threads == 1 else None,
        "input_shape": list(inp.shape),
        "session_s": session_s,
        "runs_s": runs_s,
        **settings.timing().dump(),
    }
