"""Latency measured by Ray actors on the nodes that carry a custom resource.

``LatencyService`` (driver or trial side) keeps one ``LatencyActor`` per node
that advertises the resource (``arm`` by default), spreads requests over them,
replaces actors that die or hang and retries their requests, and caches
results on disk by (architecture id, resolution, device) so a repeated or
resumed sweep never measures twice. With no such node it measures in-process
and every result says so.

    service = LatencyService(cache_dir="results/latency")
    (result,) = service.measure([LatencyRequest(arch_id, 512, lambda: supernet.extract(arch))])
    result["latency_ms"], result["device"]["node_id"], result["cached"]

Actors are named per node in the namespace ``raynas`` and detached (they
outlive the trial that started them), so every service in the cluster (one
per Tune trial, say) shares them and a node measures one model at a time;
``LatencyService.shutdown()`` stops them.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from raynas.errors import UserError, check_positive
from raynas.latency.onnx_timing import (
    RESOURCE,
    LatencySettings,
    TimingSettings,
    device_facts,
    device_key,
    export_onnx,
    input_size,
    time_onnx,
)

NAMESPACE = "raynas"


class LatencyError(RuntimeError):
    """A measurement failed (the model would not run, or retries ran out)."""


class LatencyActor:
    """Times ONNX models on the node it lives on; stateless, one request at a time."""

    def device(self, threads: int) -> dict[str, Any]:
        return device_facts(threads)

    def measure(self, onnx_bytes: bytes, settings: dict[str, int]) -> dict[str, Any]:
        settings = TimingSettings.load(settings)
        return {**time_onnx(onnx_bytes, settings), "device": device_facts(settings.threads)}


@dataclass
class LatencyRequest:
    """One sub-network to measure; ``build`` is called only on a cache miss."""

    arch_id: str
    resolution: int | Sequence[int]
    build: Callable[[], Any]

    def __post_init__(self) -> None:
        self.resolution = input_size(self.resolution)


def arch_requests(space, supernet, archs: Sequence[dict], resolution: int | Sequence[int]) -> list[LatencyRequest]:
    """Requests for sub-networks of ``supernet`` (extracted only if not cached)."""
    return [LatencyRequest(space.arch_id(arch), resolution, lambda arch=arch: supernet.extract(arch)) for arch in archs]


class LatencyCache:
    """Measurements as JSON lines in ``<directory>/latency.jsonl``.

    Appends are single ``O_APPEND`` writes, so processes sharing the file (Tune
    trials on one node, or on a shared file system) do not interleave lines;
    each lookup first reads what others appended since.
    """

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / "latency.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, dict] = {}
        self._offset = 0

    @staticmethod
    def key(arch_id: str, resolution: Sequence[int], device: str, timing: TimingSettings) -> str:
        """Same architecture, input size, device class (threads included) and warm-up/repeats."""
        return f"{arch_id}|{resolution[0]}x{resolution[1]}|{device}|warmup {timing.warmup} repeats {timing.repeats}"

    def _refresh(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        for line in complete.splitlines():
            if line.strip():
                entry = json.loads(line)
                self._entries[entry["key"]] = entry["result"]

    def get(self, arch_id: str, resolution: Sequence[int], devices: Sequence[str],
            timing: TimingSettings) -> dict | None:
        self._refresh()
        for device in devices:
            hit = self._entries.get(self.key(arch_id, resolution, device, timing))
            if hit is not None:
                return hit
        return None

    def put(self, result: dict) -> None:
        key = self.key(result["arch_id"], result["resolution"], device_key(result["device"]),
                       TimingSettings.load({k: result[k] for k in TimingSettings.model_fields}))
        line = (json.dumps({"key": key, "result": result}, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        self._entries[key] = result

    def __len__(self) -> int:
        self._refresh()
        return len(self._entries)


@dataclass
class _Slot:
    """One pooled actor and the node it is pinned to (None: any node with the resource)."""

    actor: Any
    node_id: str | None
    device: dict = field(default_factory=dict)


@dataclass
class _Job:
    request: LatencyRequest
    indices: list[int] = field(default_factory=list)
    onnx: bytes | None = None
    export_s: float = 0.0
    attempts: int = 0


class LatencyService:
    """Measure sub-network latency on nodes with ``resource``; cache on disk.

    A request gets ``timeout_s`` per attempt and ``max_attempts`` attempts; a
    new actor gets ``start_timeout_s`` to start (the autoscaler may first have
    to launch its node).

    ``measurements``, ``cache_hits``, ``retries`` and ``replacements`` count
    what this service did (for tests, logs and benchmarks).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        resource: str = RESOURCE,
        settings: TimingSettings = TimingSettings(),
        timeout_s: float = 600.0,
        max_attempts: int = 3,
        start_timeout_s: float = 600.0,
    ):
        if not isinstance(resource, str) or not resource:
            raise UserError(f"latency.resource: must be a non-empty resource name, got {resource!r}")
        check_positive("latency.timeout_s", timeout_s)
        check_positive("latency.max_attempts", max_attempts)
        check_positive("latency.start_timeout_s", start_timeout_s)
        self.resource = resource
        self.settings = settings.timing()
        self.timeout_s = float(timeout_s)
        self.max_attempts = int(max_attempts)
        self.start_timeout_s = float(start_timeout_s)
        self.cache = LatencyCache(cache_dir)
        self.measurements = self.cache_hits = self.retries = self.replacements = 0
        self._slots: list[_Slot] | None = None  # None: not started; []: local
        self._local_device: dict | None = None

    @classmethod
    def from_settings(cls, latency: LatencySettings, **options: Any) -> "LatencyService":
        """A service measuring as ``latency`` says (timing, resource, cache)."""
        return cls(latency.cache_dir, resource=latency.resource, settings=latency, **options)

    # --- pool --------------------------------------------------------------
    @property
    def remote(self) -> bool:
        self._start()
        return bool(self._slots)

    @property
    def node_ids(self) -> list[str]:
        """Nodes the pool measures on (empty when measuring locally)."""
        self._start()
        return [s.device["node_id"] for s in self._slots]

    def devices(self) -> list[str]:
        """Device keys results may come from (the cache is looked up by these)."""
        self._start()
        if not self._slots:
            return [device_key(self._local_device)]
        return sorted({device_key(s.device) for s in self._slots})

    def _resource_nodes(self) -> list[str]:
        import ray

        return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(self.resource, 0) > 0]

    def _start(self) -> None:
        if self._slots is not None:
            return
        import ray

        nodes = self._resource_nodes() if ray.is_initialized() else []
        if not nodes:
            where = "Ray is not initialised" if not ray.is_initialized() else f"no node with resource {self.resource!r}"
            self._local_device = {**device_facts(self.settings.threads), "remote": False, "note": f"{where}; measured locally"}
            self._slots = []
            return
        self._slots = [self._new_slot(node) for node in nodes]

    def _add_new_nodes(self) -> None:
        """Pick up nodes the autoscaler started since the pool was built."""
        if self._slots:
            known = {s.device["node_id"] for s in self._slots}  # an unpinned actor's node too
            self._slots += [self._new_slot(n) for n in self._resource_nodes() if n not in known]

    def _new_slot(self, node_id: str | None) -> _Slot:
        """The (shared, named) actor for ``node_id``, started and asked for its device."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = dict(
            name=actor_name(self.resource, node_id),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            resources={self.resource: 0.001},
            max_concurrency=1,
        )
        if node_id is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        last_error: Exception | None = None
        for _ in range(self.max_attempts):
            actor = ray.remote(LatencyActor).options(**options).remote()
            try:
                facts = ray.get(actor.device.remote(self.settings.threads), timeout=self.start_timeout_s)
                return _Slot(actor, node_id, {**facts, "remote": True})
            except ray.exceptions.GetTimeoutError:
                ray.kill(actor, no_restart=True)
                raise LatencyError(
                    f"no latency actor started in {self.start_timeout_s:.0f} s on "
                    f"{'node ' + node_id if node_id else 'any node'} with resource {self.resource!r}"
                ) from None
            except Exception as error:  # a dying actor of the same name may be returned once
                if not _retryable(error):
                    raise
                last_error = error
                time.sleep(0.2)
        raise LatencyError(f"could not start a latency actor on node {node_id} (resource {self.resource!r}): {last_error}")

    def _replace(self, slot: int) -> None:
        """Swap a dead or hung actor for a new one on the same node, or on any live one."""
        import ray

        old = self._slots[slot]
        ray.kill(old.actor, no_restart=True)
        alive = self._resource_nodes()
        node = old.node_id if old.node_id in alive else None
        if node is None and any(s.node_id in alive for i, s in enumerate(self._slots) if i != slot):
            del self._slots[slot]  # its node is gone; the others carry on
        else:
            self._slots[slot] = self._new_slot(node)
        self.replacements += 1

    def shutdown(self) -> None:
        """Stop the pool's (detached) actors; services still using them start new ones."""
        import ray

        for s in self._slots or []:
            ray.kill(s.actor, no_restart=True)
        self._slots = None

    # --- measuring ----------------------------------------------------------
    def measure(self, requests: Sequence[LatencyRequest]) -> list[dict]:
        """One result per request, in order: cached ones first looked up, the rest measured."""
        devices = self.devices()
        results: list[dict | None] = [None] * len(requests)
        jobs: dict[tuple, _Job] = {}  # a repeated request is measured once
        for i, request in enumerate(requests):
            hit = self.cache.get(request.arch_id, request.resolution, devices, self.settings)
            if hit is not None:
                results[i] = {**hit, "cached": True}
                self.cache_hits += 1
            else:
                jobs.setdefault((request.arch_id, request.resolution), _Job(request)).indices.append(i)
        if not jobs:
            return results
        measured = self._measure_remote(list(jobs.values())) if self._slots else self._measure_local(jobs.values())
        for job, result in measured:  # cached as they arrive: an interrupted sweep keeps them
            self.cache.put(result)
            self.measurements += 1
            for i in job.indices:
                results[i] = {**result, "cached": False}
        return results

    def _export(self, job: _Job) -> bytes:
        if job.onnx is None:
            start = time.perf_counter()
            job.onnx = export_onnx(job.request.build(), job.request.resolution)
            job.export_s = time.perf_counter() - start
        return job.onnx

    def _result(self, job: _Job, measured: dict, device: dict) -> dict:
        return {
            "arch_id": job.request.arch_id,
            "resolution": list(job.request.resolution),
            **{k: v for k, v in measured.items() if k != "device"},
            "export_s": job.export_s,
            "onnx_bytes": len(job.onnx),
            "device": device,
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _measure_local(self, jobs: Iterable[_Job]) -> Iterator[tuple[_Job, dict]]:
        for job in jobs:
            yield job, self._result(job, time_onnx(self._export(job), self.settings), self._local_device)

    def _measure_remote(self, jobs: list[_Job]) -> Iterator[tuple[_Job, dict]]:
        """Keep every actor busy with one request; retry requests whose actor died or hung."""
        import ray

        self._add_new_nodes()
        settings = self.settings.dump()
        pending = deque(jobs)
        in_flight: dict[Any, tuple[_Slot, _Job, float]] = {}
        while pending or in_flight:
            busy = {id(s) for s, _, _ in in_flight.values()}
            for slot in [s for s in self._slots if id(s) not in busy]:
                if not pending:
                    break
                job = pending.popleft()
                job.attempts += 1
                ref = slot.actor.measure.remote(self._export(job), settings)
                in_flight[ref] = (slot, job, time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            now = time.monotonic()
            for ref in list(in_flight):
                slot, job, started = in_flight[ref]
                if ref in ready:
                    try:
                        measured = ray.get(ref)
                    except Exception as error:
                        if not _retryable(error):
                            raise LatencyError(f"measuring {job.request.arch_id} failed: {error}") from error
                        failure = error
                    else:
                        del in_flight[ref]
                        yield job, self._result(job, measured, {**measured["device"], "remote": True})
                        continue
                elif now - started > self.timeout_s:
                    failure = TimeoutError(f"no answer in {self.timeout_s:g} s")
                else:
                    continue
                del in_flight[ref]
                index = next((i for i, s in enumerate(self._slots) if s is slot), None)
                if index is not None:  # a hung actor is killed too, so its node is free again
                    self._replace(index)
                if job.attempts >= self.max_attempts:
                    raise LatencyError(
                        f"measuring {job.request.arch_id} failed {job.attempts} times "
                        f"(nodes with resource {self.resource!r}); last error: {failure}"
                    )
                self.retries += 1
                pending.appendleft(job)


def trial_metrics(result: dict) -> dict[str, Any]:
    """A measurement as flat Tune metrics (``latency_ms`` is the median wall-clock run)."""
    device = result["device"]
    return {
        **{k: result[k] for k in ("latency_ms", "latency_p90_ms", "latency_iqr_ms", "latency_cpu_ms")},
        "latency_cached": result["cached"],
        "latency_remote": device["remote"],
        "latency_device": device_key(device),
        "latency_node_id": device.get("node_id"),
    }


def actor_name(resource: str, node_id: str | None) -> str:
    """The shared latency actor of a node (``None``: the one waiting for any node)."""
    return f"raynas-latency-{resource}-{node_id or 'any'}"


def _retryable(error: Exception) -> bool:
    """Actor or node death (not an error raised by the measurement itself)."""
    from ray import exceptions

    return isinstance(error, (exceptions.RayActorError, exceptions.NodeDiedError, exceptions.ObjectLostError))
