"""Consume the simulator's messages with real kombu and run them as real Celery tasks.

Usage: consume.py BROKER_URL QUEUE EXPECTED
Prints one JSON line per task executed: {"task", "team_id", "priority", "id"}.
"""
import json
import sys

from celery import Celery
from kombu import Exchange, Queue

broker, queue_name, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = Celery("posthog", broker=broker)
app.conf.task_serializer = "json"
app.conf.accept_content = ["json"]
seen = []


@app.task(name="posthog.tasks.feature_flags.update_team_flags_cache")
def update_team_flags_cache(team_id):
    return ("definitions", team_id)


@app.task(name="posthog.tasks.feature_flags.update_team_service_flags_cache")
def update_team_service_flags_cache(team_id):
    return ("flags", team_id)


def on_message(body, message):
    # body is the decoded [args, kwargs, embed] of task protocol 2.
    args, kwargs, embed = body
    name = message.headers["task"]
    assert message.headers["id"] == message.properties["correlation_id"]
    assert set(embed) >= {"callbacks", "errbacks", "chain", "chord"}, embed
    result = app.tasks[name].apply(args=args, kwargs=kwargs)
    assert result.successful(), result.traceback
    seen.append(1)
    print(json.dumps({"task": name, "team_id": result.result[1], "kind": result.result[0],
                      "priority": message.properties.get("priority"), "id": message.headers["id"]}), flush=True)
    message.ack()


queue = Queue(queue_name, Exchange(queue_name), routing_key=queue_name)
with app.connection_for_read() as conn:
    with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
        while len(seen) < expected:
            conn.drain_events(timeout=10)
