"""A real Celery app for the collector's integration test.

produce: sends tasks (with priorities, args and kwargs team ids, one pickle-serialized
         message) to a queue nobody consumes and to a queue a worker consumes.
measure: prints what kombu itself says about the queues, as JSON: its own _size, the
         length of each priority list, HLEN unacked and the overdue count.
The worker is `celery -A producer worker -Q work` run from this folder.

Configuration comes from the environment: FW_BROKER_URL, FW_PREFIX, FW_SEP.
"""
import json
import os
import sys
import time

from celery import Celery
from kombu import Queue

app = Celery("producer", broker=os.environ["FW_BROKER_URL"])
app.conf.broker_transport_options = {
    "global_keyprefix": os.environ.get("FW_PREFIX", ""),
    "sep": os.environ.get("FW_SEP", "\x06\x16"),
    "priority_steps": [0, 3, 6, 9],
    "queue_order_strategy": "priority",
}
app.conf.task_queues = [Queue("work"), Queue("nobody")]
app.conf.task_default_queue = "work"
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 4
app.conf.worker_hijack_root_logger = False


@app.task(name="posthog.tasks.feature_flags.update_team_flags_cache")
def update_team_flags_cache(team_id):
    # Blocks so that the worker keeps its prefetched messages unacked.
    time.sleep(3600)


@app.task(name="posthog.tasks.feature_flags.update_team_service_flags_cache")
def update_team_service_flags_cache(team_id=None):
    time.sleep(3600)


def produce():
    sent_teams, sent_tasks = [], {}
    # The backlog nobody consumes: duplicate teams, every priority band, args and kwargs.
    plan = [(7, 0), (7, 0), (7, 3), (7, 9), (8, 5), (8, 5), (9, 9), (10, 1), (7, 6), (11, 0)]
    for i, (team, pri) in enumerate(plan):
        t = update_team_flags_cache if i % 2 == 0 else update_team_service_flags_cache
        if i % 2 == 0:
            t.apply_async(args=[team], queue="nobody", priority=pri)
        else:
            t.apply_async(kwargs={"team_id": team}, queue="nobody", priority=pri)
        sent_teams.append(team)
        sent_tasks[t.name] = sent_tasks.get(t.name, 0) + 1
    # A message no JSON reader can decode: kombu's pickle serializer.
    update_team_flags_cache.apply_async(args=[99], queue="nobody", priority=0, serializer="pickle")
    # Work for the blocking worker: more than it prefetches.
    for team in range(100, 112):
        update_team_flags_cache.apply_async(args=[team], queue="work", priority=team % 10)
    json.dump({"sent_teams": sent_teams, "sent_tasks": sent_tasks, "pickled": 1}, sys.stdout)


def measure():
    horizon = float(sys.argv[2]) if len(sys.argv) > 2 else time.time()
    with app.connection_for_write() as conn:
        ch = conn.default_channel
        # kombu 5.2's prefixing client leaves HLEN and ZCOUNT alone, so name the keys
        # the way its HSET and ZADD (which it does prefix) wrote them.
        prefix = ch.global_keyprefix
        out = {"queues": {}, "unacked": ch.client.hlen(prefix + ch.unacked_key),
               "overdue": ch.client.zcount(prefix + ch.unacked_index_key, "-inf", horizon)}
        for q in ("work", "nobody"):
            out["queues"][q] = {
                "size": ch._size(q),
                "by_priority": {str(p): ch.client.llen(ch._q_for_pri(q, p)) for p in ch.priority_steps},
            }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    {"produce": produce, "measure": measure}[sys.argv[1]]()
