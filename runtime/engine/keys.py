"""Redis key names. Every key of one channel shares the `{channel}` hash tag, so each
channel lives in one Redis Cluster slot and its pipelines and scripts stay legal there.

    <prefix>:{<channel>}:waiting      jobs ready to run, in start order (sorted set: id →
                                      priority * 2**44 + sequence: by priority, then FIFO)
    <prefix>:{<channel>}:sequence     the counter that orders jobs of one priority
    <prefix>:{<channel>}:stream       jobs taken by a worker (a stream, consumer group
                                      CONSUMER_GROUP: the pending entries are the claims)
    <prefix>:{<channel>}:marker       wakes blocked workers (sorted set: '0' → 0 when jobs
                                      wait, 'd' → due ms of the next delayed job)
    <prefix>:{<channel>}:delayed      jobs not due yet and retries waiting (sorted set: id → due ms)
    <prefix>:{<channel>}:completed    finished jobs kept for status (sorted set: id → finished ms)
    <prefix>:{<channel>}:failed       the failed set, the dead letters (sorted set: id → failed ms)
    <prefix>:{<channel>}:cancelled    jobs cancelled before they ended (sorted set: id → ms)
    <prefix>:{<channel>}:paused       present while the channel is paused (a string)
    <prefix>:{<channel>}:backoff[:k]  present while a handler's RetryAfter holds the channel
                                      (or one limiter key's group) back; expires by itself
    <prefix>:{<channel>}:job:<id>     one job's state, attempts, result and errors (a hash)
    <prefix>:{<channel>}:events       the job events, capped (a stream: runtime.engine.events)
    <prefix>:{<channel>}:meta         settings the scripts read: events_max (a hash)
    <prefix>:{<channel>}:limiter[:k]  the rate limiter's window (sorted set of grants)
    <prefix>:{<channel>}:limiter-total[:k]  starts granted in that window (a counter)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONSUMER_GROUP", "ChannelKeys", "cancel_channel"]

CONSUMER_GROUP = "channelkit"


def cancel_channel(prefix: str) -> str:
    """The Pub/Sub channel that tells every process which running job to cancel (one for
    all channels: a process subscribes once, whatever its channel count)."""
    return f"{prefix}:cancel"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    prefix: str
    channel: str

    @property
    def base(self) -> str:
        """Every key of the channel starts with this."""
        return f"{self.prefix}:{{{self.channel}}}:"

    @property
    def waiting(self) -> str:
        return self.base + "waiting"

    @property
    def sequence(self) -> str:
        return self.base + "sequence"

    @property
    def stream(self) -> str:
        return self.base + "stream"

    @property
    def marker(self) -> str:
        return self.base + "marker"

    @property
    def paused(self) -> str:
        return self.base + "paused"

    @property
    def cancelled(self) -> str:
        return self.base + "cancelled"

    def backoff(self, group: str | None = None) -> str:
        return self.base + "backoff" + (f":{group}" if group is not None else "")

    @property
    def events(self) -> str:
        return self.base + "events"

    @property
    def meta(self) -> str:
        return self.base + "meta"

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
