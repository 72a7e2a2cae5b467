"""REDIS_URL turned into the right redis-py asyncio client: one Redis, a Redis Cluster, or
the master a set of Sentinels names.

    redis://[user:password@]host:port[/db]       one Redis (rediss:// for TLS)
    unix://[user:password@]/path/redis.sock[?db=N]
    redis+cluster://[user:password@]host:port[,host:port...][/]
                                                  a Redis Cluster: any of its nodes finds
                                                  the rest (rediss+cluster:// for TLS)
    redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]
                                                  the master the Sentinels monitor under
                                                  <master> (rediss+sentinel:// for TLS);
                                                  user and password are the master's, the
                                                  Sentinels' own come as ?sentinel_username=
                                                  and ?sentinel_password=

Query options are redis-py's connection options (`ssl_cert_reqs=none`, `ssl_ca_certs=...`,
`socket_timeout=...`). `check_redis` is the startup check that the URL's kind matches the
server (a cluster URL at a single Redis, or the reverse, is a ConfigError naming
REDIS_URL); `redis_problem` is what readiness reports (a lost cluster, no master).

Every key of a channel shares the `{channel}` hash tag, so on a cluster each channel lives
on one slot: its scripts and pipelines stay on one node. Whatever serves several channels
at once (a blocking read shared across channels, say) must group them by slot or node on a
cluster: `is_cluster` tells which client it has.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    ClusterError,
    ConnectionError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
    RedisClusterException,
    RedisError,
    TryAgainError,
)

from runtime.errors import ConfigError, RedisUnavailable

__all__ = [
    "ClusterUnavailable",
    "RedisClient",
    "RedisTarget",
    "check_redis",
    "connect",
    "is_cluster",
    "parse_redis_url",
    "redacted",
    "redis_problem",
]

RedisClient: TypeAlias = Redis | RedisCluster
"""What every engine module talks to: a single Redis (also a Sentinel-managed master) or
a Redis Cluster. Both route a script call by its keys."""

Kind = Literal["single", "cluster", "sentinel"]
SETTING = "REDIS_URL"
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
_SENTINEL_ONLY = ("sentinel_username", "sentinel_password")

# A failover (a primary lost, its replica promoted) takes the cluster's node timeout plus
# an election: the cluster answers CLUSTERDOWN or refuses connections meanwhile. A command
# is retried with a growing, jittered wait, at most FAILOVER_RETRIES times (about 3 s of
# waiting in all), then fails: HTTP answers 503, the worker loops try again a second later.
CLUSTER_MAX_CONNECTIONS = 10_000  # per node
# One Redis: a process holds at most this many connections (redis-py's own bound), and
# a command that finds them all busy waits for one (up to its socket timeout, else
# POOL_WAIT_S) instead of failing with "Too many connections" as redis-py's default pool
# does: a burst of requests or event subscribers queues instead of answering 503.
MAX_CONNECTIONS = 100
POOL_WAIT_S = 20.0
FAILOVER_RETRIES = 6
FAILOVER_BACKOFF = (0.05, 1.0)  # base and cap of the exponential backoff, seconds
FAILOVER_ERRORS: tuple[type[RedisError], ...] = (
    # A node gone, or no node for a slot (ClusterUnavailable). Not TimeoutError: a frozen
    # node is not waited on again.
    ConnectionError,
    # CLUSTERDOWN / MASTERDOWN (ClusterDownError), and redis-py giving up after 16
    # redirections in a row ("TTL exhausted."): a slot changing hands, by a failover or a
    # resharding (TRYAGAIN while a multi-key command's keys are split between two nodes).
    ClusterError,
    TryAgainError,
)


def _failover_retry() -> Retry:
    base, cap = FAILOVER_BACKOFF
    return Retry(
        ExponentialWithJitterBackoff(base=base, cap=cap),
        FAILOVER_RETRIES,
        supported_errors=FAILOVER_ERRORS,
    )


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A REDIS_URL taken apart: its kind, its nodes (a cluster's seeds, the Sentinels),
    the Sentinel master's name, and redis-py's connection options (user, password, db,
    TLS, query options)."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    sentinel_options: dict[str, Any] = field(default_factory=dict)

    @property
    def shown(self) -> str:
        """The URL without its passwords, for messages and logs."""
        return redacted(self.url)


def redacted(url: str) -> str:
    """`url` with any password replaced by `***` (user names stay: they help debugging)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hosts}"
    query = parse_qs(parts.query, keep_blank_values=True)
    if "sentinel_password" in query:
        query["sentinel_password"] = ["***"]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, doseq=True)))


def _bad(url: str, problem: str) -> ConfigError:
    return ConfigError(f"{SETTING}={redacted(url)!r}: {problem}")


def _nodes(url: str, hosts: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise _bad(url, "an empty host between commas")
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.rpartition(":")
            if not host:
                host, port_text = item, ""
        try:
            port = int(port_text) if port_text else 0
        except ValueError:
            raise _bad(url, f"the port of {item!r} is not a number") from None
        if not port:
            raise _bad(url, f"{item!r} has no port (host:port)")
        nodes.append((unquote(host), port))
    return tuple(nodes)


def _options(url: str, scheme: str, userinfo: str, query: str, path: str = "/") -> dict[str, Any]:
    """redis-py's own reading of credentials, db and query options (parse_url), done on a
    one-host URL of the plain scheme."""
    plain = urlunsplit((scheme, f"{userinfo}placeholder:1", path, query, ""))
    try:
        options: dict[str, Any] = dict(parse_url(plain))
    except ValueError as error:
        raise _bad(url, str(error)) from None
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


def parse_redis_url(url: str) -> RedisTarget:
    """Read a REDIS_URL; a ConfigError names what is wrong (never the password)."""
    scheme, _, _ = url.partition("://")
    scheme = scheme.lower()
    if scheme not in CLUSTER_SCHEMES and scheme not in SENTINEL_SCHEMES:
        if scheme not in ("redis", "rediss", "unix"):
            raise _bad(
                url,
                "expected redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, "
                "redis+sentinel:// or rediss+sentinel://",
            )
        return RedisTarget("single", url)
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    userinfo = f"{userinfo}@" if userinfo else ""
    if not hosts:
        raise _bad(url, "no host:port")
    nodes = _nodes(url, hosts)
    query = parse_qs(parts.query, keep_blank_values=True)
    sentinel_query = {name: query.pop(name)[0] for name in _SENTINEL_ONLY if name in query}
    rest = urlencode(query, doseq=True)
    if scheme in CLUSTER_SCHEMES:
        if parts.path.strip("/"):
            raise _bad(
                url,
                f"a Redis Cluster has only database 0; remove {parts.path!r} from the URL",
            )
        if sentinel_query:
            raise _bad(url, "sentinel_username/sentinel_password are for redis+sentinel://")
        options = _options(url, CLUSTER_SCHEMES[scheme], userinfo, rest)
        options.pop("db", None)
        return RedisTarget("cluster", url, nodes, options=options)
    segments = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not segments:
        raise _bad(
            url,
            "no master name: redis+sentinel://host:port[,host:port...]/<master name>[/db], "
            "the name the Sentinels monitor (`sentinel monitor <name> ...`)",
        )
    if len(segments) > 2:
        raise _bad(url, "expected /<master name>[/db] after the Sentinels")
    db_path = f"/{quote(segments[1])}" if len(segments) == 2 else "/"
    if len(segments) == 2 and not segments[1].isdigit():
        raise _bad(url, f"the database {segments[1]!r} is not a number")
    options = _options(url, SENTINEL_SCHEMES[scheme], userinfo, rest, db_path)
    sentinel_options: dict[str, Any] = {}
    if "sentinel_username" in sentinel_query:
        sentinel_options["username"] = sentinel_query["sentinel_username"]
    if "sentinel_password" in sentinel_query:
        sentinel_options["password"] = sentinel_query["sentinel_password"]
    if options.get("ssl"):
        sentinel_options["ssl"] = True
        for name, value in options.items():
            if name.startswith("ssl_"):
                sentinel_options[name] = value
    return RedisTarget(
        "sentinel",
        url,
        nodes,
        master=segments[0],
        options=options,
        sentinel_options=sentinel_options,
    )


class ClusterUnavailable(ConnectionError):
    """No node of the cluster answers, or a slot has no primary (redis-py raises these as
    RedisClusterException, which is no RedisError): a ConnectionError like any other
    outage, so every loop and boundary that handles Redis being away handles it too."""


def _unavailable(error: RedisClusterException) -> Exception:
    """A cluster outage as ClusterUnavailable; a misuse (a cross-slot transaction) as is."""
    if isinstance(error, CrossSlotTransactionError | InvalidPipelineStack) or (
        "different slots" in str(error)
    ):
        return error
    unavailable = ClusterUnavailable(f"Redis Cluster: {error}")
    unavailable.__cause__ = error
    return unavailable


def _closed_under_us(error: AttributeError) -> Exception:
    """redis-py's cluster client closes every connection of the client when a node answers
    CLUSTERDOWN (a failover under way), also those other commands are sending or reading
    on: they fail with AttributeError on the closed connection's None reader or writer
    (redis-py issue 3835 is another such race). That is a connection lost, retried as one;
    any other AttributeError is a bug and stays one."""
    if "'NoneType' object has no attribute" not in str(error):
        return error
    lost = ClusterUnavailable(f"Redis Cluster: connection closed during a failover ({error})")
    lost.__cause__ = error
    return lost


def closed_transport(error: BaseException) -> bool:
    """uvloop's answer to a write on a connection that closed under it (the same race as
    above: redis-py closed it for a failover while this command was being sent). Standard
    asyncio ignores such a write; uvloop raises RuntimeError("unable to perform operation
    on <TCPTransport closed=True ...>; the handler is closed")."""
    return isinstance(error, RuntimeError) and "the handler is closed" in str(error)


def _closed_transport(error: RuntimeError) -> Exception:
    """A closed transport (closed_transport) is a connection lost, retried as one; any
    other RuntimeError stays what it is."""
    if not closed_transport(error):
        return error
    lost = ClusterUnavailable(f"Redis Cluster: connection closed during a failover ({error})")
    lost.__cause__ = error
    return lost


class _ClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except RedisClusterException as error:
            raise _unavailable(error) from error
        except AttributeError as error:
            raise _closed_under_us(error) from error
        except RuntimeError as error:
            raise _closed_transport(error) from error


class _Cluster(RedisCluster):
    """redis-py's asyncio cluster client, with its failover retries spaced out.

    redis-py follows MOVED and ASK itself and refreshes its slot map after a node is lost,
    but its asyncio cluster client retries such errors at once: its `retry` object only
    counts attempts (its own docstring says the backoff is not used yet). A failover takes
    a second or more, so each command here goes through redis-py's `Retry` with a jittered
    exponential backoff (FAILOVER_RETRIES, FAILOVER_BACKOFF).
    """

    failover_retry: Retry

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async def attempt() -> Any:
            try:
                if self._initialize:
                    # redis-py's asyncio cluster client wants initialize() before any
                    # command (its maintainers' advice, redis-py issue 3032): it picks a
                    # command's nodes before initializing, and a burst of first commands
                    # on a fresh client ran an RPUSH twice here. initialize() holds a lock.
                    await self.initialize()
                return await RedisCluster.execute_command(self, *args, **kwargs)
            except RedisClusterException as error:
                raise _unavailable(error) from error
            except AttributeError as error:
                raise _closed_under_us(error) from error
            except RuntimeError as error:
                raise _closed_transport(error) from error

        async def failed(_: Exception) -> None:
            return None

        return await self.failover_retry.call_with_retry(attempt, failed)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


class _SentinelMaster(Redis):
    """The master a Sentinel set names; closing it closes the Sentinel clients too."""

    sentinels: Sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            await self.sentinels.aclose()


def connect(url: str, **options: Any) -> RedisClient:
    """A client for REDIS_URL (no I/O yet: `check_redis` is the startup check). `options`
    are redis-py connection options (socket_timeout, ...); the URL's own win."""
    target = parse_redis_url(url)
    if target.kind == "single":
        wait = options.get("socket_timeout") or POOL_WAIT_S
        try:
            pool = BlockingConnectionPool.from_url(
                url, **({"max_connections": MAX_CONNECTIONS, "timeout": wait} | options)
            )
        except ValueError as error:
            raise _bad(url, str(error)) from None
        return Redis.from_pool(pool)
    merged = options | target.options
    if target.kind == "cluster":
        # redis-py's cluster client refuses a command (MaxConnectionsError) once a node has
        # this many connections; its single-Redis pool has no bound. Concurrent HTTP reads
        # each hold one while they run: the same bound as one Redis in practice.
        merged.setdefault("max_connections", CLUSTER_MAX_CONNECTIONS)
        cluster = _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            **merged,
        )
        cluster.failover_retry = _failover_retry()
        return cluster
    sentinel_options = {
        name: value for name, value in options.items() if name.startswith("socket_")
    } | target.sentinel_options
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    assert target.master is not None
    master_options = merged | {"retry": _failover_retry()}
    master: _SentinelMaster = sentinel.master_for(
        target.master, redis_class=_SentinelMaster, **master_options
    )
    master.sentinels = sentinel
    return master


def is_cluster(redis: RedisClient) -> bool:
    """True for a Redis Cluster: one command may then only name keys of one slot."""
    return isinstance(redis, RedisCluster)


def _sentinel_pool(redis: RedisClient) -> SentinelConnectionPool | None:
    pool = getattr(redis, "connection_pool", None)
    return pool if isinstance(pool, SentinelConnectionPool) else None


async def check_redis(redis: RedisClient) -> None:
    """The startup check: Redis answers, and is what REDIS_URL says it is.

    ConfigError for a cluster URL at a Redis without cluster mode and the reverse, for a
    Sentinel's port given as redis://, and for a master name the Sentinels do not know;
    RedisUnavailable when nothing answers.
    """
    if isinstance(redis, RedisCluster):
        await _check_cluster(redis)
        return
    pool = _sentinel_pool(redis)
    if pool is not None:
        await _check_sentinels(pool)
    try:
        info: dict[str, Any] = await redis.info("server")
        cluster: dict[str, Any] = await redis.info("cluster")
    except ConnectionError as error:
        raise RedisUnavailable(f"{SETTING}: Redis did not answer: {error}") from error
    if info.get("redis_mode") == "sentinel":
        raise ConfigError(
            f"{SETTING} points at a Redis Sentinel, not at a Redis: use "
            "redis+sentinel://host:port[,host:port...]/<master name>"
        )
    if int(cluster.get("cluster_enabled", 0)):
        raise ConfigError(
            f"{SETTING} points at a Redis Cluster node: use redis+cluster://host:port"
            "[,host:port...] (a plain client would fail with MOVED on other nodes' slots)"
        )


async def _check_cluster(redis: RedisCluster) -> None:
    try:
        await redis.initialize()
    except RedisClusterException as error:
        if "Cluster mode is not enabled" in str(error):
            raise ConfigError(
                f"{SETTING} is a redis+cluster:// URL but the Redis there is not in cluster "
                "mode (cluster_enabled:0): use redis:// for a single Redis"
            ) from None
        raise RedisUnavailable(f"{SETTING}: the Redis Cluster did not answer: {error}") from error
    except RedisError as error:
        raise RedisUnavailable(f"{SETTING}: the Redis Cluster did not answer: {error}") from error


async def _check_sentinels(pool: SentinelConnectionPool) -> None:
    """A master name the Sentinels do not monitor is a ConfigError; no Sentinel reachable,
    or no master up, is RedisUnavailable. Both name what was asked of whom."""
    sentinel: Sentinel = pool.sentinel_manager
    name = pool.service_name
    try:
        await sentinel.discover_master(name)
        return
    except MasterNotFoundError:
        pass
    known: set[str] = set()
    reachable: list[str] = []
    unreachable: list[str] = []
    for node in sentinel.sentinels:
        where = _address(node)
        try:
            masters: Any = await node.sentinel_masters()
        except (RedisError, OSError) as error:
            unreachable.append(f"{where} ({error})")
            continue
        reachable.append(where)
        known.update(masters)
    if not reachable:
        raise RedisUnavailable(f"{SETTING}: no Sentinel answered: {'; '.join(unreachable)}")
    if name not in known:
        raise ConfigError(
            f"{SETTING}: the Sentinels at {', '.join(reachable)} monitor no master named "
            f"{name!r}; they monitor: {', '.join(sorted(known)) or 'nothing'}"
        )
    raise RedisUnavailable(
        f"{SETTING}: the Sentinels at {', '.join(reachable)} know {name!r} but see no "
        "master up for it now (a failover under way?)"
    )


def _address(node: Redis) -> str:
    kwargs = node.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def _out_of_memory(memory: dict[str, Any], where: str = "Redis") -> str | None:
    """Why Redis refuses writes for want of memory (maxmemory reached under noeviction)."""
    limit = int(memory.get("maxmemory") or 0)
    used = int(memory.get("used_memory") or 0)
    if limit and used >= limit and memory.get("maxmemory_policy") == "noeviction":
        return (
            f"{where} is out of memory (used {used} of maxmemory {limit} bytes, policy "
            "noeviction): it refuses writes, so jobs can be neither enqueued nor started"
        )
    return None


async def redis_problem(redis: RedisClient) -> str | None:
    """Why Redis cannot take jobs now (for readiness), or None: unreachable, no master,
    a cluster whose state is not ok or with a primary unreachable, out of memory."""
    if isinstance(redis, RedisCluster):
        return await _cluster_problem(redis)
    try:
        memory: dict[str, Any] = await redis.info("memory")
    except MasterNotFoundError as error:
        return f"no Redis master: {error}"
    except Exception as error:
        return f"Redis unreachable: {error}"
    return _out_of_memory(memory)


async def _cluster_problem(redis: RedisCluster) -> str | None:
    try:
        if redis._initialize:  # a node was lost: learn the current primaries first
            await redis.initialize()
        primaries = redis.get_primaries()
    except Exception as error:
        return f"Redis Cluster unreachable: {error}"

    async def one(node: ClusterNode) -> str | None:
        where = f"Redis Cluster primary {node.name}"
        try:
            state: Any = await redis.cluster_info(target_nodes=node)
            memory: Any = await redis.info("memory", target_nodes=node)
        except Exception as error:
            redis._initialize = True  # look the primaries up again on the next call
            return f"{where} unreachable: {error}"
        if state.get("cluster_state") != "ok":
            return (
                f"Redis Cluster state is {state.get('cluster_state')!r} as {node.name} sees "
                f"it ({state.get('cluster_slots_ok')} of 16384 slots served): it refuses "
                "commands until every slot has a primary again"
            )
        return _out_of_memory(memory, where)

    problems = await asyncio.gather(*(one(node) for node in primaries))
    return next((problem for problem in problems if problem), None)


def dedicated_client(redis: RedisClient, name: str) -> Redis | None:
    """A client of one connection of its own to the same Redis, named `name` in CLIENT
    LIST, for a blocking read that many channels share (one BZPOPMIN or XREAD over all
    their keys); None where one command cannot span channels (a cluster: a slot each) or
    the connection follows a Sentinel master by itself."""
    if not isinstance(redis, Redis) or type(redis.connection_pool) not in (
        ConnectionPool,
        BlockingConnectionPool,
    ):
        return None
    pool = redis.connection_pool
    return Redis(
        connection_pool=ConnectionPool(
            connection_class=pool.connection_class,
            max_connections=1,
            **{**pool.connection_kwargs, "client_name": name},
        )
    )
