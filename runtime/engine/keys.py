"""Redis key names. Every key of one channel shares the `{channel}` hash tag, so each
channel lives in one Redis Cluster slot and its pipelines and scripts stay legal there.

    <prefix>:{<channel>}:stream       jobs ready to run (a stream, consumer group CONSUMER_GROUP)
    <prefix>:{<channel>}:delayed      jobs not due yet and retries waiting (sorted set: id → due ms)
    <prefix>:{<channel>}:completed    finished jobs kept for status (sorted set: id → finished ms)
    <prefix>:{<channel>}:failed       the failed set, the dead letters (sorted set: id → failed ms)
    <prefix>:{<channel>}:job:<id>     one job's state, attempts, result and errors (a hash)
    <prefix>:{<channel>}:limiter[:k]  the rate limiter's window (sorted set of grants)
    <prefix>:{<channel>}:limiter-total[:k]  starts granted in that window (a counter)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONSUMER_GROUP", "ChannelKeys"]

CONSUMER_GROUP = "channelkit"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    prefix: str
    channel: str

    @property
    def base(self) -> str:
        """Every key of the channel starts with this."""
        return f"{self.prefix}:{{{self.channel}}}:"

    @property
    def stream(self) -> str:
        return self.base + "stream"

    @property
    def delayed(self) -> str:
        return self.base + "delayed"

    @property
    def completed(self) -> str:
        return self.base + "completed"

    @property
    def failed(self) -> str:
        return self.base + "failed"

    @property
    def job_prefix(self) -> str:
        return self.base + "job:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def limiter(self, group: str | None = None) -> str:
        return self.base + "limiter" + (f":{group}" if group is not None else "")

    def limiter_total(self, group: str | None = None) -> str:
        """Starts granted in the limiter's current window (a counter beside it)."""
        return self.base + "limiter-total" + (f":{group}" if group is not None else "")
