"""Sending the loop's notifications, off the tick's thread: the I/O around `notifications` and
`notifiers`.

`Notifier` is the controller's `on_tick`: it turns the report into events, lets each provider's
`Gate` drop duplicates, and puts what is left on that provider's bounded queue, never waiting
(a full queue drops the event, with a warning). One thread per provider sends, no faster than
its gate's token bucket, so a slow or dead provider delays only its own messages. A send that
fails for a reason that may pass (no connection, a timeout, 429, 5xx) is tried ATTEMPTS times
with a short backoff, then logged and dropped; nothing it does reaches the reconcile.

The secrets (an address that is itself a webhook's secret, a token) are read for each send and
never logged: a log line names the provider and the event, and an error's text has every
secret value replaced by `***` (`redact`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable

import tenacity

from reconciler.gitops import controller, notifications, notifiers, notifyconfig

log = logging.getLogger(__name__)

QUEUE_SIZE = 100
ATTEMPTS = 3
FIRST_RETRY = 1.0  # seconds before the second attempt; doubled before the third
SEND_TIMEOUT = 10.0
HIDDEN = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (and its URL-quoted form) replaced by ***."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}:
            text = text.replace(form, HIDDEN)
    return text


def _transient(err: BaseException) -> bool:
    """Whether trying again may help: a refused connection or a timeout, 429 or a 5xx."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code == 429 or err.code >= 500
    return isinstance(err, OSError)


def send(request: notifiers.Request, timeout: float = SEND_TIMEOUT) -> int:
    """Send one request; its HTTP status (urllib raises HTTPError for one that is no success).
    Only http(s): an address read from a file is not checked by the schema, and urllib would
    read a file:// URL."""
    if urllib.parse.urlsplit(request.url).scheme not in ("http", "https"):
        raise ValueError("the address is not an http:// or https:// URL")
    outgoing = urllib.request.Request(
        request.url, data=request.body, headers=request.headers, method=request.method
    )
    with urllib.request.urlopen(outgoing, timeout=timeout) as response:
        return int(response.status)


class _Channel:
    """One provider: its queue, its gate, its sending thread."""

    def __init__(
        self,
        provider: notifyconfig.Provider,
        secrets: notifyconfig.Secrets,
        gate: notifications.Gate,
        clock: Callable[[], float],
        retry_wait: float,
    ) -> None:
        self.provider = provider
        self.secrets = secrets
        self.gate = gate
        self._clock = clock
        self._retry_wait = retry_wait
        self.queue: queue.Queue[notifications.Event | None] = queue.Queue(QUEUE_SIZE)
        self.thread = threading.Thread(
            target=self._run, name=f"notify-{provider.name}", daemon=True
        )
        self.thread.start()

    def offer(self, event: notifications.Event) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            log.warning(
                "notifications to %s: %d waiting, %s of %s dropped",
                self.provider.name,
                QUEUE_SIZE,
                event.reason,
                event.extension,
            )

    def _run(self) -> None:
        while (event := self.queue.get()) is not None:
            while (delay := self.gate.wait(self._clock())) > 0:
                time.sleep(delay)
            try:
                self._deliver(event)
            except Exception:  # a bug must not end the thread: the next event still goes
                log.exception("notifications to %s failed", self.provider.name)

    def _deliver(self, event: notifications.Event) -> None:
        name, kind = self.provider.name, self.provider.type
        try:
            address, token = self.secrets.address(), self.secrets.token()
        except Exception as err:  # a file or Secret gone: its path or name only, no value
            log.warning("notification to %s not sent: its secrets cannot be read: %s", name, err)
            return
        request = notifiers.request(self.provider, event, address, token)
        if request is None:
            return
        try:
            for attempt in tenacity.Retrying(
                stop=tenacity.stop_after_attempt(ATTEMPTS),
                wait=tenacity.wait_exponential(multiplier=self._retry_wait),
                retry=tenacity.retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    send(request)
        except Exception as err:
            shown = redact(str(err), [address, token])
            log.warning(
                "notification %s of %s to %s (%s) failed: %s",
                event.reason,
                event.extension,
                name,
                kind,
                shown,
            )
            return
        log.info("notified %s (%s): %s", name, kind, event.summary)


class Notifier:
    """The loop's `on_tick`: events out to every provider that wants them."""

    def __init__(
        self,
        config: notifyconfig.Config,
        read_secret: notifyconfig.ReadSecret,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_wait: float = FIRST_RETRY,
    ) -> None:
        self._clock = clock
        self.events = notifications.Events()
        self.channels = [
            _Channel(
                provider,
                provider.secrets(read_secret),
                notifications.Gate(config.dedupe_window),
                clock,
                retry_wait,
            )
            for provider in config.providers
        ]

    def __call__(self, report: controller.TickReport) -> None:
        events = self.events.of(report)
        now = self._clock()
        for channel in self.channels:
            for event in events:
                wanted = channel.provider.wants(event.kind, event.extension)
                if wanted and not channel.gate.duplicate(event, now):
                    channel.offer(event)

    def close(self, timeout: float = SEND_TIMEOUT) -> None:
        """Send what is queued (for at most `timeout` seconds in all), then stop."""
        deadline = time.monotonic() + timeout
        for channel in self.channels:
            try:
                channel.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                continue
        for channel in self.channels:
            channel.thread.join(max(0.0, deadline - time.monotonic()))
