"""The broker connection: connect, announce, replay the outbox, follow it live, reconnect.

One aiomqtt client per connection (aiomqtt clients are not reusable after a disconnect). Every
connection carries a retained Last Will `{"online": false}` on the status topic, so a daemon that
dies without saying goodbye (kill -9, power loss, network cut) is shown offline by the broker
itself. A clean stop publishes that offline status itself first, then disconnects (a clean
DISCONNECT makes the broker discard the Will).

On each connection the order is: status online, the retained state of every unit, then the outbox
from its oldest message. Messages that were queued before this connection existed are flagged
`historical: true`; everything queued after is live. Because the outbox is sent strictly by id,
all history goes out before any live data. Reconnects back off exponentially with jitter, so a
plant of instruments does not stampede a broker that has just come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from shuttled.config import MqttConfig
from shuttled.telemetry.outbox import Outbox, QueuedMessage
from shuttled.telemetry.payloads import Topics

if TYPE_CHECKING:
    import aiomqtt

log = structlog.get_logger("shuttled.telemetry")

BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 5.0
BATCH = 200  # messages in flight per round trip while replaying
PUBLISH_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class Publisher:
    def __init__(
        self,
        settings: MqttConfig,
        topics: Topics,
        outbox: Outbox,
        status: Callable[[bool], dict],
        client_id: str,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self._status = status
        self.client_id = client_id
        self.connected = False
        self._retained: dict[str, dict] = {}
        self._dirty: dict[str, None] = {}  # retained topics to (re)publish, in order of change
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- what the feed calls -----

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-publisher")

    def set_retained(self, topic: str, payload: dict) -> None:
        """The latest value of a retained topic; only the latest is ever worth sending."""
        self._retained[topic] = payload
        self._dirty[topic] = None
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self) -> None:
        """Publish offline, disconnect; whatever is still queued stays in the outbox."""
        self._stop.set()
        self.wake()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("mqtt: no clean disconnect in time; the broker will send the Last Will")
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the connection loop -----

    def _client(self, mqtt: object) -> aiomqtt.Client:
        import aiomqtt

        s = self.settings
        password = None
        if s.password_file is not None:  # read per connection: a rotated secret takes effect
            password = s.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        tls = None
        if s.tls_ca is not None:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(s.tls_ca),
                certfile=str(s.tls_cert) if s.tls_cert else None,
                keyfile=str(s.tls_key) if s.tls_key else None,
            )
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=password,
            identifier=self.client_id,
            will=aiomqtt.Will(self.topics.status, _encode(self._status(False)), qos=1, retain=True),
            clean_session=True,  # the outbox, not the broker session, is the store and forward
            keepalive=s.keepalive_s,
            tls_params=tls,
            timeout=PUBLISH_TIMEOUT_S,
            max_inflight_messages=BATCH,
        )

    async def _run(self) -> None:
        import aiomqtt

        delay = BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                async with self._client(aiomqtt) as client:
                    self.connected = True
                    delay = BACKOFF_MIN_S
                    log.info("mqtt connected", host=self.settings.host, port=self.settings.port,
                             queued=self.outbox.pending())
                    await self._serve(client)
            except (aiomqtt.MqttError, OSError) as error:
                log.warning("mqtt unavailable; queuing durably", error=str(error),
                            retry_in_s=round(delay, 2))
            finally:
                self.connected = False
            if self._stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.status, _encode(self._status(True)), qos=1, retain=True)
        self._dirty = dict.fromkeys(self._retained)
        backlog_end = self.outbox.last_id()  # queued before this connection: historical
        sent = 0
        while True:
            if self._stop.is_set():
                await client.publish(
                    self.topics.status, _encode(self._status(False)), qos=1, retain=True
                )
                log.info("mqtt: offline published", queued=self.outbox.pending())
                return
            if self._dirty:
                await self._publish_retained(client)
                continue
            batch = self.outbox.peek(sent, BATCH)
            if batch:
                sent = await self._publish_batch(client, batch, backlog_end)
                continue
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _publish_retained(self, client: aiomqtt.Client) -> None:
        topics = list(self._dirty)
        self._dirty.clear()
        try:
            await asyncio.gather(
                *(client.publish(t, _encode(self._retained[t]), qos=1, retain=True) for t in topics)
            )
        except BaseException:
            for topic in topics:
                self._dirty.setdefault(topic)
            raise

    async def _publish_batch(
        self, client: aiomqtt.Client, batch: list[QueuedMessage], backlog_end: int
    ) -> int:
        """Send a batch pipelined (paho keeps the order on the wire); acknowledge in the outbox
        only the unbroken prefix the broker confirmed, then re-raise the first failure."""

        def encoded(message: QueuedMessage) -> bytes:
            return _encode({**message.payload, "historical": message.id <= backlog_end})

        results = await asyncio.gather(
            *(client.publish(m.topic, encoded(m), qos=1) for m in batch), return_exceptions=True
        )
        confirmed = 0
        failure: BaseException | None = None
        for message, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                failure = result
                break
            confirmed = message.id
        if confirmed:
            self.outbox.acknowledge(confirmed)
        if failure is not None:
            raise failure
        return confirmed
