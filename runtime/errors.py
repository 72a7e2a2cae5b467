"""Errors raised by the Channelkit runtime.

ChannelkitError
├── ConfigError (also ValueError)       a setting or flag is wrong
├── UnknownChannelError (also KeyError) a channel name that the registry does not have
├── PermanentError                      raised by a handler: fail the job now, never retry
└── EnqueueError                        a job could not be written to Redis
"""

from __future__ import annotations

__all__ = [
    "ChannelkitError",
    "ConfigError",
    "EnqueueError",
    "PermanentError",
    "UnknownChannelError",
]


class ChannelkitError(Exception):
    """The root of every error Channelkit raises on purpose."""


class ConfigError(ChannelkitError, ValueError):
    """A runtime setting, flag or environment variable has a value that cannot work."""


class UnknownChannelError(ChannelkitError, KeyError):
    """A channel name that the generated registry does not declare."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"unknown channel {name!r}; channels declared: {', '.join(known) or 'none'}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class PermanentError(ChannelkitError):
    """Raise from a handler when retrying cannot help (bad address, rejected by the provider).

    The job goes straight to the failed set, whatever `retry.attempts` says.
    """


class EnqueueError(ChannelkitError):
    """A job could not be stored in Redis."""
