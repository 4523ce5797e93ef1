"""Handing a composed email to its transport: an SMTP server, or .eml files in development.

Every transport failure is classified: `TransientMailError` (try again later: server down, timeout,
4xx, misconfiguration an operator can fix) or `PermanentMailError` (this message will never be
accepted: 5xx for the recipient or the content). The processor decides what to do with each.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib

from libs.settings import Settings

# One delivery runs connect, (STARTTLS/AUTH) and the mail transaction, each bounded by the SMTP
# timeout; the whole attempt is bounded too.
STEPS_PER_ATTEMPT = 3


class TransientMailError(Exception):
    pass


class PermanentMailError(Exception):
    pass


@dataclass(frozen=True)
class OutgoingMail:
    key: str  # the event id: names the .eml file, appears in logs
    recipient: str
    message: EmailMessage
    kind: str = "course-completed"  # which mail: the .eml file's name starts with it


# Called the moment the transport has accepted the mail (SMTP's reply to DATA), before anything
# else (QUIT, closing): whatever it records is then as close to the acceptance as it can be.
OnAccepted = Callable[[], Awaitable[None]]


class Mailer(Protocol):
    # Read-only here: implementations may hold them as attributes or compute them as properties.
    @property
    def description(self) -> str: ...

    # Upper bound of one `send` up to the acceptance.
    @property
    def attempt_deadline_s(self) -> float: ...

    async def send(self, mail: OutgoingMail, on_accepted: OnAccepted) -> None: ...


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._envelope_sender = parseaddr(sender)[1]
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s
        self.description = f"smtp://{host}:{port}"

    @property
    def attempt_deadline_s(self) -> float:
        return self._timeout_s * STEPS_PER_ATTEMPT

    async def send(self, mail: OutgoingMail, on_accepted: OnAccepted) -> None:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout_s,
        )
        try:
            await self._transact(client, mail)
        except BaseException:
            client.close()
            raise
        # Accepted (250 to DATA). Recorded before QUIT: a slow or failing QUIT, or this process
        # dying during it, must not leave an accepted mail unrecorded.
        try:
            await on_accepted()
        finally:
            await self._quit(client)

    async def _transact(self, client: aiosmtplib.SMTP, mail: OutgoingMail) -> None:
        try:
            async with asyncio.timeout(self.attempt_deadline_s):
                await client.connect()
                await client.send_message(
                    mail.message, sender=self._envelope_sender, recipients=[mail.recipient]
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if codes and all(_is_permanent(code) for code in codes):
                raise PermanentMailError(f"recipient refused: {detail}") from exc
            raise TransientMailError(f"recipient deferred: {detail}") from exc
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
            # Refusals of this recipient or this content: no retry will change the answer.
            if _is_permanent(exc.code):
                raise PermanentMailError(f"{exc.code} {exc.message}") from exc
            raise TransientMailError(f"{exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            # HELO, AUTH, MAIL FROM refusals are the same for every mail: configuration or an
            # outage an operator fixes, so they are retried (and dead-lettered if it lasts).
            raise TransientMailError(f"{type(exc).__name__}: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        # Politeness only: the mail is accepted whatever QUIT answers.
        try:
            async with asyncio.timeout(self._timeout_s):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            client.close()


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


class FileMailer:
    """Development transport: each mail becomes `<dir>/<kind>-<event id>.eml`
    (`course-completed-...`, `password-reset-...`)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.description = f"files in {directory}"

    attempt_deadline_s = 10.0

    def path_for(self, key: str, kind: str = "course-completed") -> Path:
        return self._directory / f"{kind}-{key}.eml"

    async def send(self, mail: OutgoingMail, on_accepted: OnAccepted) -> None:
        try:
            await asyncio.to_thread(
                self._write, self.path_for(mail.key, mail.kind), mail.message.as_bytes()
            )
        except OSError as exc:
            raise TransientMailError(f"cannot write mail file: {exc}") from exc
        await on_accepted()

    def _write(self, path: Path, content: bytes) -> None:
        # Written to a temporary name and renamed: a reader never sees half a mail, and a resend
        # of the same event replaces the file instead of adding a second one.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".eml.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)  # mkstemp makes it private; mails are for reading
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def mailer_from_settings(settings: Settings) -> SmtpMailer | FileMailer:
    if not settings.smtp_host:
        return FileMailer(settings.mail_dir)
    return SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        username=settings.smtp_user or None,
        password=settings.smtp_password or None,
        starttls=settings.smtp_starttls,
        timeout_s=settings.smtp_timeout_s,
    )
