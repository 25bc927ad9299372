"""The retention sweep: a Celery task that Celery beat sends every RETENTION_SWEEP_S (shared/retention.py)."""

from __future__ import annotations

import logging

from shared import retention
from shared.celery_app import RETENTION_SWEEP, app

log = logging.getLogger(__name__)


@app.task(name=RETENTION_SWEEP, ignore_result=True)
def sweep() -> dict[str, int]:
    """Delete every clip (or clip's footage) whose retention period has passed."""
    counts = retention.sweep()
    if any(counts.values()):
        log.info("retention: deleted %d clips and the footage of %d", counts["clip"], counts["footage"])
    return counts
