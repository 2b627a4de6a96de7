"""The inter-broker listener: a second ROUTER socket, on the node's ``internal_port``, that only brokers reach.

Brokers send their broker-only requests here (replica fetches,
OffsetsForLeaderEpoch, registration, heartbeats, AlterIsr, controlled
shutdown, the internal creation of ``__consumer_offsets``); the client
port refuses them. The socket speaks ZeroMQ CURVE with the cluster's server
key pair, and a ZAP handler on the node's context accepts only peers that
present the cluster's client public key, so a peer must hold the cluster
secret (cluster_secret.py) to complete the handshake at all; every byte on
the connection is encrypted and authenticated. ``ZAP_ENFORCE_DOMAIN`` makes
the socket refuse everyone should the ZAP handler be missing, instead of
libzmq's default of letting any CURVE client in.
"""

from __future__ import annotations

import hmac
from typing import Callable

import zmq
import zmq.asyncio
from rill.node.cluster_secret import ClusterSecret, CurveKeyPair
from rill.node.network.server import NetworkServer
from zmq.auth.asyncio import AsyncioAuthenticator

ZAP_DOMAIN = "rill-brokers"


class _ClusterKeyCheck:
    """Accepts one CURVE client key, the cluster's (pyzmq's credentials-provider interface)."""

    def __init__(self, allowed_public_key: bytes):
        self._allowed = allowed_public_key

    def callback(self, domain: str, key: bytes) -> bool:
        return hmac.compare_digest(key, self._allowed)


def start_authenticator(context: zmq.asyncio.Context, secret: ClusterSecret) -> AsyncioAuthenticator:
    """Start the context's ZAP handler (on the running loop), admitting only the cluster's brokers.

    Start it before the listener binds; stop it (``stop()``) before the context is destroyed.
    """
    authenticator = AsyncioAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback(ZAP_DOMAIN, _ClusterKeyCheck(secret.client_keys.public))
    return authenticator


def curve_server(keys: CurveKeyPair) -> Callable[[zmq.Socket], None]:
    """Socket options that make a ROUTER a CURVE server authenticated through ZAP_DOMAIN."""

    def secure(socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    return secure


def curve_client(secret: ClusterSecret) -> Callable[[zmq.Socket], None]:
    """Socket options that let a DEALER connect to a broker's inter-broker listener (set before connect)."""
    client, server = secret.client_keys, secret.server_keys

    def secure(socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.CURVE_SERVERKEY, server.public)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, client.public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, client.secret)

    return secure


def open_internal_listener(context: zmq.asyncio.Context, bind_address: str, max_request_bytes: int,
                           secret: ClusterSecret, slow_request_ms: int) -> NetworkServer:
    """A network server on ``bind_address`` that only the cluster's brokers can talk to."""
    return NetworkServer(context, bind_address, max_request_bytes, secure=curve_server(secret.server_keys),
                         slow_request_ms=slow_request_ms)
