"""Messages to department systems, one home for all of it:

- `queue`: a message queued in the transaction of the handoff it reports (so it exists exactly when the handoff
  does), the pending messages of an incident, and the orphans (pending messages of closed incidents, which no
  flow will send) leased to a worker's outbox loop;
- `sending`: one attempt (signed by `signing`, posted outside any transaction, recorded), the retry delays, and
  the dead letter after the last retry;
- `service`: the delivery log with every attempt, the dead-letter list and replay.

The Prefect task that retries an attempt is `tasks.delivery`; the flows and the worker only schedule it.
"""
