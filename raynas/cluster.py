"""Joining a Ray cluster: the one place every command that uses Ray goes through.

Ray's own convention decides where: ``--address`` if given, else the
``RAY_ADDRESS`` environment variable, else a cluster already running on this
machine (``ray start --head``), else a new private local Ray. An address that
does not answer is one clear error within seconds (Ray itself waits minutes).
"""

from __future__ import annotations

import os
import socket

from raynas.errors import UserError

REACH_TIMEOUT_S = 5.0


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
    try:
        # A local Ray keeps its dashboard: Ray's state API runs in it, and Ray Train relies on that API to free
        # the placement group of a run whose controller died (a recipe trial that ASHA stopped, say).
        ray.init(address=address, log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    except ConnectionError as err:
        raise UserError(f"--address: cannot join a Ray cluster at {address!r} ({err})") from None
