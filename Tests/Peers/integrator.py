#!/usr/bin/env python3
"""An integrator of SpotGuard's bus, written with pika from docs/asyncapi.yaml and
docs/integrating.md only, as the broker user `integrator`.

  integrator.py publish URL SPEC OUT
      SPEC (JSON): client_id, agent_id, stranger_agent_id (another client's agent), pools (two
      pool ids of the agent's type). Publishes, in the documented shape: a report (v2), a single
      submission (v2, pricing.submitted), a heartbeat, a report in the deprecated v1 wrapper, the
      first report again (same id), and messages SpotGuard must refuse: garbage, an unknown
      schema_version, a negative and a 1e308 price, a pool listed twice, a time in the future,
      another client's agent, a type that is not its routing key. Then tries command.issued,
      which the broker must refuse. Writes {name: message id, ..., "command_issued": outcome}.

  integrator.py subscribe URL NAME OUT KEY...
      Declares the queue integrator.NAME bound to KEYs, prints "ready", and appends every message
      to OUT as a JSON line with its routing key, message id, whether it is valid against the
      document (and why not), until SIGTERM.
"""
import datetime
import importlib.util
import json
import os
import signal
import sys
import uuid

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXCHANGE = "spotguard.events"


def now(offset=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(key, payload, version=2, type_=None):
    return {"id": str(uuid.uuid4()), "type": type_ or key, "schema_version": version,
            "occurred_at": now(), "producer": "pika-collector", "payload": payload}


def publish(url, spec_path, out_path):
    spec = json.load(open(spec_path))
    client, agent, pools = spec["client_id"], spec["agent_id"], spec["pools"]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    sent = {}

    def send(name, key, message, body=None):
        message_id = message["id"] if message else str(uuid.uuid4())
        channel.basic_publish(
            EXCHANGE, key, body if body is not None else json.dumps(message).encode(),
            pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id=message_id),
            mandatory=True)
        sent[name] = message_id
        return message

    def report(prices, observed=None, agent_id=agent):
        return {"report_id": str(uuid.uuid4()), "client_id": client, "agent_id": agent_id,
                "pools": [{"pool_id": p, "price": x} for p, x in prices], "on_demand_price": 0.096,
                "observed_at": observed or now(-5), "received_at": now()}

    first = send("report", "pricing.reported", envelope("pricing.reported", report([(pools[0], 0.0311), (pools[1], 0.0322)])))
    send("submission", "pricing.submitted", envelope("pricing.submitted", {
        "submission_id": str(uuid.uuid4()), "client_id": client, "source_agent_id": agent, "source_type": "primary",
        "pool_id": pools[1], "spot_price": 0.0333, "observed_at": now(-4), "submitted_at": now(-4), "received_at": now()}))
    send("heartbeat", "heartbeat.received", envelope("heartbeat.received", {
        "heartbeat_id": str(uuid.uuid4()), "client_id": client, "agent_id": agent, "status": "online",
        "observed_at": now(-1), "received_at": now()}, version=1))
    send("report_v1", "pricing.reported", envelope("pricing.reported", {"form": "report", "report": report([(pools[0], 0.0344)], now(-3))}, version=1))
    # the same message again: consumers deduplicate on its id
    channel.basic_publish(EXCHANGE, "pricing.reported", json.dumps(first).encode(),
                          pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id=first["id"]), mandatory=True)
    # what SpotGuard must refuse, each alone
    send("garbage", "pricing.reported", None, body=b"{not json")
    send("version_7", "pricing.reported", envelope("pricing.reported", report([(pools[0], 0.03)]), version=7))
    send("negative", "pricing.reported", envelope("pricing.reported", report([(pools[0], -0.03)])))
    send("huge", "pricing.reported", envelope("pricing.reported", report([(pools[0], 1e308)])))
    send("twice", "pricing.reported", envelope("pricing.reported", report([(pools[0], 0.03), (pools[0], 0.031)])))
    send("future", "pricing.reported", envelope("pricing.reported", report([(pools[0], 0.03)], now(3600))))
    send("stranger", "pricing.reported", envelope("pricing.reported", report([(pools[0], 0.03)], agent_id=spec["stranger_agent_id"])))
    send("mislabelled", "pricing.reported", envelope("pricing.reported", report([(pools[0], 0.03)]), type_="heartbeat.received"))
    conn.close()

    # an internal key: the broker refuses it to this user
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    try:
        channel.basic_publish(EXCHANGE, "command.issued", b"{}", pika.BasicProperties(delivery_mode=2), mandatory=True)
        sent["command_issued"] = "accepted"
    except pika.exceptions.ChannelClosedByBroker as e:
        sent["command_issued"] = f"refused {e.reply_code} {e.reply_text}"
    try:
        conn.close()
    except Exception:
        pass
    json.dump(sent, open(out_path, "w"))


def subscribe(url, name, out_path, keys):
    spec = importlib.util.spec_from_file_location("contract", os.path.join(ROOT, "deploy", "check-bus-contract.py"))
    contract = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(contract)
    channels = contract.channel_validators(contract.load_doc())
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    queue = f"integrator.{name}"
    channel.queue_declare(queue, exclusive=True, auto_delete=True)
    for key in keys:
        channel.queue_bind(queue, EXCHANGE, key)
    out = open(out_path, "a")

    def on_message(ch, method, properties, body):
        record = {"routing_key": method.routing_key, "message_id": properties.message_id}
        try:
            message = json.loads(body)
            validators = next(v for rx, v in channels if rx.match(method.routing_key))
            errors = [[e.message for e in validator.iter_errors(message)] for _, validator in validators]
            record["valid"] = any(not e for e in errors)
            record["errors"] = [] if record["valid"] else errors
            record["body"] = message
        except Exception as e:
            record.update(valid=False, errors=[repr(e)])
        out.write(json.dumps(record) + "\n")
        out.flush()
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    signal.signal(signal.SIGTERM, lambda *_: channel.stop_consuming())
    print("ready", flush=True)
    channel.start_consuming()
    conn.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "publish":
        publish(*sys.argv[2:5])
    elif len(sys.argv) >= 6 and sys.argv[1] == "subscribe":
        subscribe(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        print(__doc__)
        sys.exit(2)
