"""``redis://`` and ``rediss://``: dedup and rate limits shared by every replica.

Each operation is one Lua script call (one round trip, atomic on the server). Keys carry a hash
tag (``{stripe}``, ``{203.0.113.9}``), so each script touches one cluster slot. Time comes from
the Redis server (``TIME``), so replicas with drifting clocks share one GCRA timeline. Driver
errors become :class:`StoreError`; the stages apply their declared policy.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from gateway.errors import StoreError
from gateway.protocols.resp import RespError, RespPool
from gateway.stores.base import STORES, Claim, StoreOptions

# Values: "F:<token>" while in flight (expires after the lease), "D:<token>" once done.
# A claim already holding our own token is ours: a call whose reply timed out ran anyway, and the
# caller's retry (dedup falls back to a plain claim when the fused admit fails) must not wait on
# itself and answer 409 (seen in the soak as `in_flight` for events sent once).
_CLAIM_FN = """
local function claim(key, token, lease_ms)
  local v = redis.call('GET', key)
  if v then
    if string.sub(v, 1, 2) == 'D:' then return 2 end
    if v ~= 'F:' .. token then return 1 end
  end
  redis.call('SET', key, 'F:' .. token, 'PX', lease_ms)
  return 0
end
"""
# GCRA, mirroring gateway.stores.base.gcra: the seconds to wait, 0 when allowed (and counted).
_GCRA_FN = """
local function gcra(key, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local interval = 1 / tonumber(rate)
  local tat = tonumber(redis.call('GET', key)) or now
  local backlog = math.max(tat - now, 0)
  local full = tonumber(burst) * interval
  if backlog > full then  -- a clock that stepped back: keep a full bucket ahead at most
    backlog = full
    redis.call('SET', key, string.format('%.6f', now + full), 'PX', math.ceil(full * 1000) + 1000)
  end
  local wait = backlog - (tonumber(burst) - 1) * interval
  if wait > 0 then return wait end
  local new_tat = now + backlog + interval
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
  return 0
end
"""
_CLAIM = _CLAIM_FN + "return claim(KEYS[1], ARGV[1], ARGV[2])"
# Floats go back as strings: Redis would truncate a Lua number reply to an integer.
_TAKE = _GCRA_FN + "return tostring(gcra(KEYS[1], ARGV[1], ARGV[2]))"
# The provider rate limit, then (only if allowed) the claim: two keys with one hash tag.
_ADMIT = (
    _GCRA_FN
    + _CLAIM_FN
    + """
local wait = gcra(KEYS[1], ARGV[1], ARGV[2])
if wait > 0 then return {tostring(wait), -1} end
return {'0', claim(KEYS[2], ARGV[3], ARGV[4])}
"""
)
_COMMIT = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == 'F:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'D:' .. ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'F:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_CLAIMS = {0: Claim.CLAIMED, 1: Claim.IN_FLIGHT, 2: Claim.DONE}


class Commands(Protocol):
    """What the store sends commands through: a ``RespPool`` (one server) or a ``ClusterClient``."""

    timeout: float

    async def call(self, *args: Any) -> Any: ...

    async def close(self) -> None: ...


class _Script:
    """A Lua script run by its SHA1 (``EVALSHA``), loaded on first use or after a server restart."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1

    async def __call__(self, pool: Commands, keys: list[str], args: tuple[object, ...]) -> Any:
        try:
            return await pool.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await pool.call("EVAL", self.source, len(keys), *keys, *args)


@STORES.register("redis", "rediss")
class RedisStore:
    """A store on one Redis server (a Redis Cluster is ``redis_cluster.RedisClusterStore``); keys under ``prefix``."""

    remote = True

    def __init__(self, url: str, prefix: str = "whgw:", timeout: float = 0.5) -> None:
        self.url = url
        self.prefix = prefix
        # One pipelined connection (per node): a burst of concurrent requests queues its commands
        # on it rather than failing for want of a connection (dedup fails closed).
        self._pool = self.connect(url, timeout)
        self._claim = _Script(_CLAIM)
        self._commit = _Script(_COMMIT)
        self._release = _Script(_RELEASE)
        self._take = _Script(_TAKE)
        self._admit = _Script(_ADMIT)

    @classmethod
    def open(cls, url: str, options: StoreOptions) -> RedisStore:
        return cls(url, prefix=options.key_prefix, timeout=options.timeout)

    @classmethod
    def check(cls, url: str, key_prefix: str) -> tuple[str, str] | None:
        return None

    @staticmethod
    def connect(url: str, timeout: float) -> Commands:
        """The client for ``url`` (no connection is opened before the first call)."""
        return RespPool(url, timeout=timeout)

    async def _call(self, script: _Script, key: str | tuple[str, ...], *args: object) -> Any:
        keys = [self.prefix + k for k in key] if isinstance(key, tuple) else [self.prefix + key]
        try:
            return await script(self._pool, keys, args)
        except (RespError, OSError, TimeoutError) as exc:
            raise StoreError(f"redis: {type(exc).__name__}") from exc

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        return _CLAIMS[int(await self._call(self._claim, key, token, _ms(lease)))]

    async def commit(self, key: str, token: str, ttl: float) -> None:
        await self._call(self._commit, key, token, _ms(ttl))

    async def release(self, key: str, token: str) -> None:
        await self._call(self._release, key, token)

    async def take(self, key: str, rate: float, burst: int) -> float:
        return float(await self._call(self._take, key, repr(float(rate)), burst))

    async def admit(
        self, rate_key: str, rate: float, burst: int, claim_key: str, token: str, lease: float
    ) -> tuple[float, Claim | None]:
        wait, state = await self._call(self._admit, (rate_key, claim_key), repr(float(rate)), burst, token, _ms(lease))
        retry_after = float(wait)
        return (retry_after, None) if retry_after else (0.0, _CLAIMS[int(state)])

    async def ping(self) -> bool:
        try:
            return bool(await self._pool.call("PING") == b"PONG")
        except (RespError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self._pool.close()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
