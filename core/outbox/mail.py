"""E-mail as a delivery channel: a queued delivery whose purpose starts with `mail.` carries a ready message
(`{"subject", "text", "html", "attachments": [{"filename", "media_type", "base64"}]}`) and goes to the address
settings give its target (`mail_addresses`), through the SMTP server in settings. The delivery log records each
attempt as for a webhook."""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from core.platform.settings import Smtp, get_settings

PREFIX = "mail."


def is_mail(purpose: str) -> bool:
    return purpose.startswith(PREFIX)


def can_mail(target: str) -> bool:
    """Whether `target` can be sent e-mail: a mail server is set and the target has an address."""
    settings = get_settings()
    return settings.smtp is not None and target in settings.mail_addresses


def build_message(mail: dict[str, Any], *, to: str, sender: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = mail["subject"]
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    # The delivery's id in the Message-ID: a receiving mailbox can drop a message sent twice (a retry).
    message["Message-ID"] = make_msgid(idstring=message_id, domain=sender.rpartition("@")[2] or None)
    message.set_content(mail["text"])
    if mail.get("html"):
        message.add_alternative(mail["html"], subtype="html")
    for item in mail.get("attachments") or []:
        maintype, _, subtype = str(item["media_type"]).partition("/")
        message.add_attachment(base64.b64decode(item["base64"]), maintype=maintype, subtype=subtype,
                               filename=item["filename"])
    return message


def submit(smtp: Smtp, message: EmailMessage) -> None:
    """Hand the message to the mail server (blocking: run it off the event loop)."""
    client: smtplib.SMTP
    if smtp.ssl:
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with client:
        if smtp.starttls and not smtp.ssl:
            client.starttls(context=ssl.create_default_context())
        if smtp.username and smtp.password is not None:
            client.login(smtp.username, smtp.password.get_secret_value())
        client.send_message(message)
