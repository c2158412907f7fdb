"""Where a Redis Cluster command goes: the key's slot, the ``redis+cluster://`` URL, the slot map.

Pure functions for ``gateway.protocols.cluster``: ``key_slot`` is the specification's
``HASH_SLOT`` (CRC16-XMODEM of the key or of its first non-empty ``{hash tag}``, modulo 16384),
``routing_key`` finds the key in a command, ``parse_cluster_url`` reads the seed nodes and
``parse_slots`` turns a ``CLUSTER SLOTS`` reply into one owner per slot.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

SLOTS = 16384
Node = tuple[str, int]
_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
_KEY_AT_3 = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_KEYLESS = frozenset({"PING", "CLUSTER", "INFO", "SCRIPT", "TIME", "ECHO", "COMMAND"})
_BACKOFF = 0.02  # seconds before the first retry of a node that failed; doubles per attempt


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``: CRC16 (XMODEM) of its first non-empty ``{hash tag}``, else of
    the whole key, modulo 16384 (the Redis Cluster specification's ``HASH_SLOT``)."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


def routing_key(args: tuple[Any, ...]) -> Any:
    """The key a command is routed by, or ``None`` for a command any node answers."""
    name = str(args[0]).upper()
    if name in _KEY_AT_3:
        return args[3] if int(args[2]) > 0 else None
    if name in _KEYLESS or len(args) < 2:
        return None
    return args[1]  # GET, SET, DEL, PTTL, ...: the key comes first


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL: seed nodes, TLS, and the credentials every node shares."""

    seeds: tuple[Node, ...]
    tls: bool
    userinfo: str  # as written (percent-encoded), "" when none

    def node_url(self, node: Node) -> str:
        """The ``redis://`` URL of one node, for a ``RespPool``."""
        host = f"[{node[0]}]" if ":" in node[0] else node[0]
        auth = f"{self.userinfo}@" if self.userinfo else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{node[1]}/0"


def parse_cluster_url(url: str) -> ClusterURL:
    """``ValueError`` names what is wrong (never echoing the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"not a redis+cluster:// or rediss+cluster:// URL: {scheme}://")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    database = path.split("?", 1)[0].strip("/")
    if database not in ("", "0"):
        raise ValueError(f"Redis Cluster has only database 0, the URL names {database!r}")
    seeds = tuple(_node(part) for part in hosts.split(",") if part)
    if not seeds:
        raise ValueError("the URL names no seed node (host:port,host:port)")
    return ClusterURL(seeds=seeds, tls=_SCHEMES[scheme], userinfo=userinfo)


def _node(text: str) -> Node:
    if text.startswith("["):  # [2001:db8::1]:7000
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host or not (port or "6379").isdigit() or not 0 < int(port or 6379) < 65536:
        raise ValueError(f"not a host:port: {text!r}")
    return host, int(port or 6379)


def parse_slots(reply: list[Any], asked: Node) -> list[Node | None]:
    """The owner of every slot from a ``CLUSTER SLOTS`` reply (``[[start, end, [host, port, id],
    replica...], ...]``). A node that does not know its own address answers ``""`` or ``"?"``:
    that is the host we asked."""
    owners: list[Node | None] = [None] * SLOTS
    for start, end, primary, *_replicas in reply:
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        node = (host if host not in ("", "?") else asked[0], int(primary[1]))
        owners[int(start) : int(end) + 1] = [node] * (int(end) - int(start) + 1)
    return owners
