"""What `make bench` is measured against: the targets of issue 19 ("handoffs at province scale on two cores"),
in one place for the printed report (bench/__main__.py) and the chart (bench/chart.py)."""

from __future__ import annotations

# Latencies, p95 in seconds.
LATENCY_P95 = {
    "trigger_to_first_task": 0.300,  # trigger → first task visible in the department's inbox, incidents waiting
    "handoff_within_stage": 0.100,  # completion → dependent task visible, within a stage
    "handoff_across_stage": 0.100,  # … and across a stage boundary
    "inbox_read_50_clients": 0.020,  # an inbox read while 50 desks refresh every second
}
HANDOFFS_PER_SECOND = 200.0  # sustained ledgered handoffs
DRAIN_SECONDS = 5.0  # the backlog the sustained window set off, finished within this long of its end
CPU_MS_PER_HANDOFF = 10.0  # all processes together
WAITING_INCIDENTS = 10_000  # open and waiting at once …
WAITING_MEMORY_MB = 8_000.0  # … in this much memory (PSS, all processes) …
IDLE_CPU_PERCENT = 10.0  # … with the whole stack idle at most this share of one core
