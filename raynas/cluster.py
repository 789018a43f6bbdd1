"""Joining a Ray cluster: the one place every command that uses Ray goes through.

Ray's own convention decides where: ``--address`` if given, else the
``RAY_ADDRESS`` environment variable, else a cluster already running on this
machine (``ray start --head``), else a new private local Ray. An address that
does not answer is one clear error within seconds (Ray itself waits minutes).
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator

from raynas.errors import UserError

JOIN_HELP = "Ray cluster to join (default: RAY_ADDRESS, else a running cluster, else a local Ray)"

REACH_TIMEOUT_S = 5.0


def add_cluster_arguments(parser, logs: str = "Ray's") -> None:
    """A command's ``--address`` (the cluster to join, ``connect``) and ``--verbose`` (show ``logs`` own log
    output instead of keeping it in the run's ``raynas.log``)."""
    parser.add_argument("--address", default=None, help=JOIN_HELP)
    parser.add_argument("--verbose", action="store_true", help=f"show {logs} own log output")


def connect(address: str | None = None, verbose: bool = False) -> None:
    """Join the cluster at ``address`` (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``), see the module doc.

    Ray's own start-up notices stay off the console unless ``verbose`` (errors always
    show); workers' output is not forwarded. Does nothing when already connected.
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
        except (OSError, ValueError) as err:
            raise UserError(f"--address: no Ray cluster answers at {address!r} ({err}); expected HOST:PORT of a "
                            f"head node, 'auto' on a cluster node, or none for a local Ray") from None
    options = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address is None:
        from ray._private.services import canonicalize_bootstrap_address

        # Ray's own choice: the cluster `ray start` left on this machine, else (None) a new local Ray
        address = canonicalize_bootstrap_address(None) or "local"
    if address == "local":
        _start_local_ray(options)
        return
    try:
        ray.init(address=address, **options)
    except ConnectionError as err:
        raise UserError(f"--address: cannot join a Ray cluster at {address!r} ({err})") from None


def _start_local_ray(options: dict) -> None:
    """A new private Ray on this machine, its processes told its address (``RAY_ADDRESS``).

    It keeps its dashboard: Ray's state API runs in it, and Ray Train's placement-group cleaner asks that API
    whether a run's controller died (a recipe trial that ASHA stopped, say) to free the run's workers' CPUs.
    The cleaner finds the API from ``RAY_ADDRESS``, else by looking for Ray on the machine; where a second Ray
    runs (another command's private one), that look fails, the CPUs stay reserved and later runs wait forever.
    """
    import ray
    import ray.util

    with socket.socket() as probe:  # a free port for the new Ray's GCS, so its address is known before it starts
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    address = f"{ray.util.get_node_ip_address()}:{port}"
    with tune_environment(RAY_GCS_SERVER_PORT=str(port), RAY_ADDRESS=address):  # inherited by Ray's processes
        ray.init(address="local", **options)


# What a Tune trial that only drives a Ray Train run asks for: no CPU, so that its run's workers can have every
# CPU (with 0.01 CPU each, two 1-CPU runs do not fit on 2 CPUs); Tune needs some resource, so 1 MiB of memory
DRIVER_TRIAL_RESOURCES = {"cpu": 0, "memory": 2**20}

# Tune's console output off (its progress tables, the TensorBoard hint) and of its result loggers only the JSON
# one (per-trial CSV and TensorBoard files cost more than a tabular trial itself: BENCHMARKS.md)
QUIET_TUNE = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


@contextlib.contextmanager
def tune_environment(**variables: str) -> Iterator[None]:
    """Environment variables set for a duration: Tune's knobs read when an experiment runs, Ray's when a local
    Ray starts."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
