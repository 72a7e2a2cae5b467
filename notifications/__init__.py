"""Channelkit's reference app: the handlers of a notification service.

Each handler takes its channel's generated payload model and a `JobContext`, delivers the
message and returns the channel's result model. Configuration comes from environment
variables read when a job runs (see `notifications.settings`); with none set, every
handler logs what it would have sent, so the service runs out of the box.
"""

from __future__ import annotations

from notifications.email import send_email
from notifications.push import send_push
from notifications.sms import send_sms
from notifications.whatsapp import send_whatsapp

__all__ = ["send_email", "send_push", "send_sms", "send_whatsapp"]
