"""Redis key names. Every key of one channel shares the `{channel}` hash tag, so each
channel lives in one Redis Cluster slot and its pipelines and scripts stay legal there."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONSUMER_GROUP", "ChannelKeys"]

CONSUMER_GROUP = "channelkit"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    prefix: str
    channel: str

    def _key(self, what: str) -> str:
        return f"{self.prefix}:{{{self.channel}}}:{what}"

    @property
    def stream(self) -> str:
        """The jobs ready to run: a stream read by the consumer group CONSUMER_GROUP."""
        return self._key("stream")

    @property
    def delayed(self) -> str:
        """Jobs not due yet: a sorted set of taskiq messages scored by due time (ms)."""
        return self._key("delayed")
