"""The Celery app and the task names; imports no task code, so the web can enqueue by name."""

from __future__ import annotations

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError

from shared.config import VIDEO_QUEUE, Settings, get_settings
from shared.errors import ServiceUnavailable

PROCESS_JOB = "maskwatch.process_job"
EXPLAIN_FACE = "maskwatch.explain_face"
PROCESS_SEGMENT = "maskwatch.process_segment"  # (job_id, k): one segment of a long clip (worker/segments.py)
ANONYMISE = "maskwatch.anonymise"  # (job_id,): a copy of a finished clip with every face blurred
JOIN_SEGMENTS = "maskwatch.join_segments"  # (job_id,): the segments' outputs made one result (worker/join.py)
RETENTION_SWEEP = "maskwatch.retention_sweep"  # (): delete what has expired (worker/retention.py, by beat)
JOIN_WEBCAM = "maskwatch.join_webcam"  # (user_id, session): webcam chunks as one clip (worker/webcam_clip.py)
MAINTENANCE_QUEUE = "maintenance"
VIDEO_TASKS = (PROCESS_JOB, EXPLAIN_FACE, PROCESS_SEGMENT, JOIN_SEGMENTS, ANONYMISE, JOIN_WEBCAM)


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for long, must-not-be-lost video jobs on a Redis broker."""
    # `include` is read by worker processes only: the web never imports task code.
    app = Celery("maskwatch", broker=settings.redis_url,
                 include=["worker.tasks", "worker.explain", "worker.segments", "worker.join",
                          "worker.anonymise", "worker.retention", "worker.webcam_clip"])
    app.conf.update(
        task_queues=[Queue(VIDEO_QUEUE), Queue("default"), Queue(MAINTENANCE_QUEUE)],
        task_default_queue="default",
        # The sweep has a queue of its own, consumed by the beat's own worker (bin/run, the compose
        # file): behind an hour-long video job it would delete footage an hour late.
        task_routes={**{name: {"queue": VIDEO_QUEUE} for name in VIDEO_TASKS},
                     RETENTION_SWEEP: {"queue": MAINTENANCE_QUEUE}},
        # A job is acknowledged only when done; a worker that dies puts it back in the queue.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis redelivers unacknowledged work after this long: it must outlast the longest task (a
        # segment: shared/config.py); dead workers are noticed sooner by their heartbeats.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_soft_time_limit=settings.job_time_limit_s,
        task_time_limit=settings.job_hard_limit_s,
        task_ignore_result=True,  # Mongo holds job state; no result backend
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.connect_timeout_s,
        worker_hijack_root_logger=False,
        worker_max_memory_per_child=3_000_000,  # KiB: a leaking child is replaced between jobs
        task_serializer="json",
        accept_content=["json"],
        # `celery beat` (bin/run, the compose file) sends the sweep; a worker of the default queue runs it.
        beat_schedule={"retention-sweep": {"task": RETENTION_SWEEP, "schedule": settings.retention_sweep_s,
                                           "options": {"expires": settings.retention_sweep_s}}},
    )
    return app


app = make_celery(get_settings())


def enqueue(task_name: str, *args) -> None:
    """Send a task by name; ServiceUnavailable (quickly, no hang) when Redis cannot be reached."""
    try:
        app.send_task(
            task_name, args=list(args),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                          "interval_max": 1.0},
        )
    except (OperationalError, OSError) as e:
        raise ServiceUnavailable(
            f"the job queue (Redis at {get_settings().redis_url}) is unreachable "
            f"({type(e).__name__}); start it (bin/services start) or fix REDIS_URL"
        ) from None
