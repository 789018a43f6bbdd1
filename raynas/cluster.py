"""Joining a Ray cluster from a command: a local Ray, or a cluster's address checked first."""

from __future__ import annotations

import socket

from raynas.errors import UserError

REACH_TIMEOUT_S = 5.0


def connect(address: str | None = None) -> None:
    """Start a local Ray (``None``) or join the cluster at ``address`` ("auto", "HOST:PORT", "ray://HOST:PORT").

    An address that does not answer is one clear error within seconds (Ray itself waits minutes).
    """
    import ray

    if ray.is_initialized():
        return
    if address not in (None, "auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
        except (OSError, ValueError) as err:
            raise UserError(f"--address: no Ray cluster answers at {address!r} ({err}); "
                            f"expected HOST:PORT of a head node, 'auto' on a cluster node, or none for a local Ray") from None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:
        raise UserError(f"--address: cannot join a Ray cluster at {address!r} ({err})") from None
