"""Every wait a stop allows, in one table, and the bound they add up to.

SPEC: a stop, however slow its handlers and clients, ends within graceful_timeout_s + 5 s.
The stop itself reads top to bottom in Runtime._stop (runtime.py); its waits, in order:

| phase (Runtime._stop)             | wait                         | why                                     |
|-----------------------------------|------------------------------|-----------------------------------------|
| 3 drain                           | server.graceful_timeout_s    | running handlers finish, due work runs  |
| 4-5 give back + owned tasks       | CANCEL_GRACE_S               | cancelled attempts go back to queued,   |
|                                   |                              | outcomes and commits in flight land,    |
|                                   |                              | amqp consumer starts/stops end          |
| 5 owned tasks cancelled           | SETTLE_S                     | what the grace did not see end, ends    |
| 5 background work cancelled       | SETTLE_S                     | the scheduler, the connection keeper,   |
|                                   |                              | the schedules' loop (scheduler.py)      |
| 6 RabbitMQ connection close       | AMQP_CLOSE_S                 | RabbitMQ answers the close (amqp only)  |
| 7 process pools close             | POOL_CLOSE_TIMEOUT_S         | killed workers' queues close, so no     |
|                                   |                              | semaphore leaks at exit                 |
| 8 connections                     | CONNECTION_GRACE_S           | answers being written are finished      |
| 8 connections aborted             | ABORTED_GRACE_S              | the tasks serving them end              |
| exit (cli.run_loop)               | STRAY_TASK_GRACE_S           | tasks that ignore their cancellation    |

Work that is not a wait is not cut short, because cutting it loses what it holds: the
broker's last write (6: the memory snapshot, the sqlite journal's last transaction) and
the pools' shutdown (7: workers are killed, not waited; their queues' close is). The
RabbitMQ connection's close is a wait, for RabbitMQ's answer: nothing is lost by leaving
it, since a dropped connection gives every unacked delivery back.

The broker's own tasks are the runtime's too: create_broker(settings, tasks=owner) hands
the broker the TaskOwner, so the local broker's commits under way (commits.py) and the amqp
broker's consumer starts and stops (amqp/intake.py) are among the owned tasks phase 5
awaits within CANCEL_GRACE_S. The broker's close has no wait of its own for them (a broker
made without an owner, as in tests, owns its tasks and closes them with the same bounds).

Not part of a stop (they never add to it):
- ASYNC_CANCEL_GRACE_S: at a handler's *timeout*, how long a cancelled async handler gets
  before its attempt fails anyway. A stop cancels the consumer, which does not wait for
  the handler; one that ignores cancellation is left to STRAY_TASK_GRACE_S.
- HEAD_TIMEOUT_S: Hypercorn's keep-alive timer, within which a request head must arrive.
  At a stop idle connections close at once, and one still sending its head is cut off
  with the others after CONNECTION_GRACE_S.
"""

from __future__ import annotations

# SPEC's promise beyond the drain.
STOP_MARGIN_S = 5.0

# After the drain's deadline: cancelled consumers give their messages back (an owned task
# each) and the owned tasks end (those give-backs, outcomes being recorded, commits in
# flight), all within this. A give-back slower than that leaves its message `running`,
# which the broker's last write (memory, sqlite) or RabbitMQ (amqp) gives back anyway.
CANCEL_GRACE_S = 1.0
# A task cancelled once its grace is over gets this long to end (a task that honours its
# cancellation ends within a turn or two of the loop).
SETTLE_S = 0.1
# Open connections get this long to finish their answers once the runtime is stopped;
# those still open are then aborted (serving.py), so no client holds up the exit.
CONNECTION_GRACE_S = 1.5
# The RabbitMQ connection's close (phase 6) waits this long for RabbitMQ's answer: a
# healthy broker answers in milliseconds; one that does not is left, since its unacked
# deliveries go back to their queues when the connection drops at exit anyway.
AMQP_CLOSE_S = 0.5
# After the workers are killed, their pools get this long, in all, to close their queues
# (a few ms each on a quiet machine), so the resource tracker reports no leaked semaphores.
POOL_CLOSE_TIMEOUT_S = 0.5
# After those aborts, the tasks that served the connections get this long to end.
ABORTED_GRACE_S = 0.5
# At exit, tasks still running after the stop (an async handler that swallows its
# cancellation) get this long, not forever as asyncio.run would give them (such a task
# has already had its cancellation for the whole of the stop's later phases).
STRAY_TASK_GRACE_S = 0.5

# The waits above, one after another, in the order a stop reaches them.
STOP_WAITS_S = (
    CANCEL_GRACE_S,
    SETTLE_S,  # owned tasks
    SETTLE_S,  # background work
    AMQP_CLOSE_S,
    POOL_CLOSE_TIMEOUT_S,
    CONNECTION_GRACE_S,
    ABORTED_GRACE_S,
    STRAY_TASK_GRACE_S,
)

# Not part of a stop: see the module's docstring.
ASYNC_CANCEL_GRACE_S = 1.0
HEAD_TIMEOUT_S = 5


def stop_bound_s(graceful_timeout_s: float) -> float:
    """The longest a stop waits: the drain, then every grace in turn."""
    return graceful_timeout_s + sum(STOP_WAITS_S)
