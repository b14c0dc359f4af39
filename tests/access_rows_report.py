"""Access-matrix rows for after-action reports and analytics (see test_access.py).

Both are for reviewers (the emergency office, managers, administrators), as the timeline is: a department's user
gets 403 even on an incident it is on; an incident that does not exist is 404 for a reviewer. The PDF row prints
with headless Chromium (Debian's `chromium`, which .ci/system-packages installs); where it is not installed, a
reviewer gets 503 `pdf_unavailable` instead (who may ask is the same either way).
"""

from __future__ import annotations

from tests.access_matrix import roles
from tests.fixtures.system import chromium_available
from tests.test_access import Case

REVIEW = roles(401, 200, 200, 200, 403, 403)
REVIEW_MISSING = roles(401, 404, 404, 404, 403, 403)
PRINTED = 200 if chromium_available() else 503
REVIEW_PDF = roles(401, PRINTED, PRINTED, PRINTED, 403, 403)

ROWS: list[Case] = [
    Case("GET", "/api/incidents/{incident_id}/report", "incident", REVIEW),
    Case("GET", "/api/incidents/{incident_id}/report", "unknown", REVIEW_MISSING),
    Case("GET", "/api/incidents/{incident_id}/report.pdf", "incident", REVIEW_PDF),
    Case("GET", "/api/incidents/{incident_id}/report.pdf", "unknown", REVIEW_MISSING),
    Case("GET", "/api/analytics", "none", REVIEW),
    Case("GET", "/api/analytics?from=2026-01-01&to=2026-12-31&type=flood&department=water_affairs&include_drills=true",
         "none", REVIEW, note="filters"),
    Case("GET", "/api/analytics.csv", "none", REVIEW),
]
