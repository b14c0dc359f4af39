"""The after-action report of one incident, computed from what the run left behind.

`build_report(session, incident_id=...)` reads the incident, its plan version, its task rows, level changes
and ledger, and returns an `AfterActionReport`: each stage's duration, each handoff's waits (assigned →
acknowledged → completed) against its deadline, the critical path (`core.learning.critical_path`) and the
slowest department on it, escalations and level changes with their reasons, deviations from the plan, and
the ledger's verification. It writes nothing.

Durations are seconds. A drill on a compressed clock (`Incident.clock_speed > 1`) reports them in plan time
(wall-clock seconds × clock speed), and says so (`time_basis == "plan"`); its timeline picture is drawn on
the plan clock too. The HTML page and the PDF render the same report through `reports/` templates.

- `model`: the report and its parts (dataclasses, no behaviour but the counts and the JSON form);
- `compute`: `build_report`, from the database, and the time arithmetic (plan clock, deadline outcomes);
- `text`: the words the templates need (durations, shares, a drill's plan clock);
- `charts`: the SVG pictures, every text escaped where it is built;
- `render`: the templates' context and the printable HTML (`render_report_html`).
"""
