"""``redis+cluster://`` and ``rediss+cluster://``: the Redis store on a Redis Cluster.

The same Lua scripts as ``gateway.stores.redis``, sent through ``ClusterClient``, which routes each
call to the primary that owns its keys' slot. That works because every key carries a hash tag
(``dd:{stripe}:evt_1``, ``rl:prov:{stripe}``, ``rl:src:{203.0.113.9}``): a script's keys share one
slot (the fused rate limit + claim of ``admit`` touches two keys of one provider), and the
provider's and sources' keys spread over the primaries. A prefix with braces would put its own
tag in front and pin every key to one slot, so it is refused.

Why a retry after a lost connection is safe for these scripts: ``take`` may count one request
twice (a token, never an event); ``commit`` and ``release`` are idempotent; a ``claim`` that ran
before the reply was lost finds its own lease and answers ``IN_FLIGHT``, so the gateway answers
409 and the provider retries after the lease: late, never lost, never delivered twice.
"""

from __future__ import annotations

from gateway.protocols.cluster import ClusterClient
from gateway.protocols.resp import RespError
from gateway.protocols.slots import parse_cluster_url
from gateway.stores.base import STORES
from gateway.stores.redis import Commands, RedisStore


@STORES.register("redis+cluster", "rediss+cluster")
class RedisClusterStore(RedisStore):
    """A store on a Redis Cluster, found from its seed nodes; all keys under ``prefix``."""

    @classmethod
    def check(cls, url: str, key_prefix: str) -> tuple[str, str] | None:
        if "{" in key_prefix or "}" in key_prefix:
            return (
                "key_prefix",
                "must not contain { or } with Redis Cluster (a tag there pins every key to one slot)",
            )
        try:
            parse_cluster_url(url)
        except ValueError as exc:
            return "url", str(exc)
        return None

    @staticmethod
    def connect(url: str, timeout: float) -> Commands:
        return ClusterClient(url, timeout=timeout)

    async def ping(self) -> bool:
        """Ready when a node answers and says every slot is served (``cluster_state:ok``)."""
        try:
            info = await self._pool.call("CLUSTER", "INFO")
        except (RespError, OSError, TimeoutError):
            return False
        return b"cluster_state:ok" in info
