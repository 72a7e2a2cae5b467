"""What quiet channels cost: one `runtime serve` with C idle channels against one with a
single idle channel.

    .venv/bin/python bench/idle_channels.py [--quick] [--channels 200] [--seconds 20]

Each process (workers on, HTTP API on for readiness, gRPC off) is started, waits until
/health/ready, settles for 10 s (past the readers' idle back-off), then is measured for
S seconds: its CPU (utime + stime from /proc, as a share of one core), the Redis
commands it sends per second (MONITOR lines from its own connections: a script call is
one command, what the script runs inside is not counted), and its open Redis connections
(CLIENT LIST entries whose peer port belongs to the process, read from
/proc/<pid>/net/tcp). Goal
(issue 16): flat in the number of channels; under 2 % of a core and under 100
commands/s idle.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Row

CHANNEL: dict[str, Any] = {"handler": "benchapp.handlers:noop", "concurrency": 10}


def _ports_of(pid: int) -> set[int]:
    """Local TCP ports of the process's sockets (its side of each Redis connection)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _our_clients(pid: int) -> list[dict[str, Any]]:
    ports = _ports_of(pid)
    found: list[dict[str, Any]] = []
    for client in benchlib.sync_redis().client_list():
        if int(str(client.get("addr", ":0")).rsplit(":", 1)[1]) in ports:
            found.append(client)
    return found


def _commands_per_s(pid: int, seconds: float) -> float:
    """Commands the process's connections send, per second, watched with MONITOR."""
    url = benchlib.redis_url()
    watched = subprocess.run(
        ["timeout", str(seconds), "redis-cli", "-u", url, "monitor"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    ports = {str(port) for port in _ports_of(pid)}
    sent = 0
    for line in watched.splitlines():
        source = line.partition("[")[2].partition("]")[0].rpartition(":")[2]
        if source in ports:
            sent += 1
    return sent / seconds


def measure(project: benchlib.Project, seconds: float, log: Path) -> tuple[float, float, int]:
    prefix = benchlib.unique_prefix("idle")
    try:
        proc = benchlib.serve(project.path, project.package, prefix, grpc=False, log=log)
        with benchlib.stopping(proc):
            benchlib.http_ready(proc.ports["http"], timeout=180, proc=proc)
            time.sleep(10)  # past the readers' idle back-off
            cpu0, t0 = benchlib.cpu_seconds(proc.pid), time.time()
            commands = _commands_per_s(proc.pid, seconds)
            cpu1, t1 = benchlib.cpu_seconds(proc.pid), time.time()
            clients = _our_clients(proc.pid)
            connections = len(clients)
            kinds: dict[str, int] = {}
            for client in clients:
                kinds[str(client.get("cmd"))] = kinds.get(str(client.get("cmd")), 0) + 1
            print(f"  idle: the connections' last commands: {kinds}", flush=True)
            return (cpu1 - cpu0) / (t1 - t0), commands, connections
    finally:
        benchlib.delete_prefix(prefix)


def run(
    quick: bool = False, channels: int | None = None, seconds: float | None = None
) -> list[Row]:
    channels = channels or (50 if quick else 200)
    seconds = seconds or (10 if quick else 20)
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as scratch:
        base = Path(scratch)
        many = benchlib.make_project(
            base, "bench_idle_many", {f"c{n:03d}": CHANNEL for n in range(channels)}
        )
        one = benchlib.make_project(base, "bench_idle_one", {"c000": CHANNEL})
        benchlib.wait_quiet()
        cpu_one, cmds_one, conns_one = measure(one, seconds, base / "one.log")
        cpu_many, cmds_many, conns_many = measure(many, seconds, base / "many.log")
    print(
        f"  idle: 1 channel {cpu_one:.1%} CPU, {cmds_one:.0f} cmds/s, {conns_one} connections; "
        f"{channels} channels {cpu_many:.1%} CPU, {cmds_many:.0f} cmds/s, {conns_many} "
        "connections",
        flush=True,
    )
    note = f"measured for {seconds:.0f} s after 10 s idle"
    return [
        Row(
            "idle",
            f"CPU of an idle process with {channels} channels (share of a core)",
            f"{cpu_many:.1%}",
            f"{cpu_one:.1%} with 1 channel",
            None,
            "< 2 %",
            cpu_many < 0.02,
            note,
        ),
        Row(
            "idle",
            f"Redis commands/s of an idle process with {channels} channels",
            f"{cmds_many:.0f}",
            f"{cmds_one:.0f} with 1 channel",
            None,
            "< 100",
            cmds_many < 100,
            note,
        ),
        Row(
            "idle",
            f"Redis connections of an idle process with {channels} channels",
            str(conns_many),
            f"{conns_one} with 1 channel",
            None,
            "flat",
            conns_many <= conns_one + 2,
            "the shared marker watch holds one blocking connection for every idle channel",
        ),
    ]


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--channels", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    benchlib.report(run(args.quick, args.channels, args.seconds), args.json)


if __name__ == "__main__":
    main()
