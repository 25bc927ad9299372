"""One Settings object built from the environment; nothing else reads os.environ."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

VIDEO_QUEUE = "video"


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; fix it in the environment") from None


def _float(env: dict, name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; fix it in the environment") from None


def _flag(env: dict, name: str) -> bool:
    return env.get(name, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the product; each field documents its variable and default."""

    mongo_uri: str = "mongodb://127.0.0.1:27017/maskwatch"  # MONGO_URI; the path names the database
    redis_url: str = "redis://127.0.0.1:6379/0"  # REDIS_URL: Celery broker
    secret_key: str = ""  # SECRET_KEY: Flask sessions; a random one per process when empty (dev only)
    upload_max_mb: int = 2048  # UPLOAD_MAX_MB: largest accepted upload
    max_video_seconds: int = 4 * 3600  # MAX_VIDEO_SECONDS: longer clips are refused by the worker
    max_pixels: int = 4096 * 2160  # MAX_PIXELS: larger frames are refused (absurd dimensions)
    job_time_limit_s: int = 6 * 3600  # JOB_TIME_LIMIT_S: soft limit of one job; hard limit is +120 s
    asset_cache: Path = ROOT / ".cache" / "assets"  # ASSET_CACHE: where `python -m models.fetch` puts files
    asset_mirror: Path | None = None  # ASSET_MIRROR: a local folder laid out like the manifest's paths
    worker_device: str = "auto"  # WORKER_DEVICE: auto | cpu | gpu
    classifier_precision: str = "auto"  # CLASSIFIER_PRECISION: auto (int8 when recorded) | int8 | float (CPU)
    output_max_height: int = 1080  # OUTPUT_MAX_HEIGHT: annotated output is scaled down above this; 0 = never
    encoder_preset: str = "veryfast"  # X264_PRESET: libx264 preset for the annotated output
    connect_timeout_s: float = 3.0  # CONNECT_TIMEOUT_S: how long to wait for MongoDB/Redis before saying so
    session_cookie_secure: bool = False  # SESSION_COOKIE_SECURE: Secure cookies even on plain HTTP requests
    proxy_fix_hops: int = 0  # PROXY_FIX_HOPS: reverse proxies trusted for X-Forwarded-Proto/For/Host
    session_hours: int = 12  # SESSION_HOURS: how long a login lasts
    stalled_after_s: int = 90  # STALLED_AFTER_S: a running job without a heartbeat this long is re-queued
    segment_seconds: int = 60  # SEGMENT_SECONDS: long clips are split at keyframes into ~this; 0: never
    segment_time_limit_s: int = 1800  # SEGMENT_TIME_LIMIT_S: soft limit of one segment task (hard: +120 s)
    retention_days: float = 30.0  # RETENTION_DAYS: a clip is deleted this long after its upload; 0: kept
    retention_keep_statistics: bool = False  # RETENTION_KEEP_STATISTICS: at expiry delete only the footage
    retention_sweep_s: float = 300.0  # RETENTION_SWEEP_S: how often Celery beat runs the retention sweep
    live_segment_seconds: float = 10.0  # LIVE_SEGMENT_SECONDS: cameras are cut at keyframes into ~this
    live_allow_private: bool = False  # LIVE_ALLOW_PRIVATE: camera URLs may be loopback/private
    live_retry_max_s: float = 30.0  # LIVE_RETRY_MAX_S: longest wait before reconnecting
    extra: dict = field(default_factory=dict)  # not from the environment: test overrides

    @property
    def job_hard_limit_s(self) -> int:
        """Hard time limit: the soft limit plus room to record the failure."""
        return self.job_time_limit_s + 120

    @property
    def segment_hard_limit_s(self) -> int:
        """Hard time limit of one segment task: its soft limit plus room to record the failure."""
        return min(self.segment_time_limit_s, self.job_time_limit_s) + 120

    @property
    def visibility_timeout_s(self) -> int:
        """Redis visibility timeout: twice the longest task, or Redis would redeliver live work.

        The longest task is a segment (at most 1.5 x SEGMENT_SECONDS of video, within its time limit);
        a clip short enough to run unsplit is no longer than that. A worker machine that dies is noticed
        sooner by its heartbeats (STALLED_AFTER_S): this is only the broker's own backstop.
        """
        return 2 * self.segment_hard_limit_s

    @property
    def upload_max_bytes(self) -> int:
        """Upload limit in bytes."""
        return self.upload_max_mb * 1024 * 1024

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        """Build settings from environment variables (see each field's comment)."""
        env = dict(os.environ if env is None else env)
        mirror = env.get("ASSET_MIRROR")
        device = env.get("WORKER_DEVICE", cls.worker_device).lower()
        if device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"WORKER_DEVICE={device!r}: use auto, cpu or gpu")
        precision = env.get("CLASSIFIER_PRECISION", cls.classifier_precision).lower()
        if precision not in ("auto", "int8", "float"):
            raise ValueError(f"CLASSIFIER_PRECISION={precision!r}: use auto, int8 or float")
        return cls(
            mongo_uri=env.get("MONGO_URI", cls.mongo_uri),
            redis_url=env.get("REDIS_URL", cls.redis_url),
            secret_key=env.get("SECRET_KEY", ""),
            upload_max_mb=_int(env, "UPLOAD_MAX_MB", cls.upload_max_mb),
            max_video_seconds=_int(env, "MAX_VIDEO_SECONDS", cls.max_video_seconds),
            max_pixels=_int(env, "MAX_PIXELS", cls.max_pixels),
            job_time_limit_s=_int(env, "JOB_TIME_LIMIT_S", cls.job_time_limit_s),
            asset_cache=Path(env.get("ASSET_CACHE") or cls.asset_cache).expanduser().resolve(),
            asset_mirror=Path(mirror).expanduser().resolve() if mirror else None,
            worker_device=device,
            classifier_precision=precision,
            output_max_height=_int(env, "OUTPUT_MAX_HEIGHT", cls.output_max_height),
            encoder_preset=env.get("X264_PRESET", cls.encoder_preset),
            connect_timeout_s=_float(env, "CONNECT_TIMEOUT_S", cls.connect_timeout_s),
            session_cookie_secure=_flag(env, "SESSION_COOKIE_SECURE"),
            proxy_fix_hops=_int(env, "PROXY_FIX_HOPS", cls.proxy_fix_hops),
            session_hours=_int(env, "SESSION_HOURS", cls.session_hours),
            stalled_after_s=_int(env, "STALLED_AFTER_S", cls.stalled_after_s),
            segment_seconds=_int(env, "SEGMENT_SECONDS", cls.segment_seconds),
            segment_time_limit_s=_int(env, "SEGMENT_TIME_LIMIT_S", cls.segment_time_limit_s),
            retention_days=_float(env, "RETENTION_DAYS", cls.retention_days),
            retention_keep_statistics=_flag(env, "RETENTION_KEEP_STATISTICS"),
            retention_sweep_s=_float(env, "RETENTION_SWEEP_S", cls.retention_sweep_s),
            live_segment_seconds=_float(env, "LIVE_SEGMENT_SECONDS", cls.live_segment_seconds),
            live_allow_private=_flag(env, "LIVE_ALLOW_PRIVATE"),
            live_retry_max_s=_float(env, "LIVE_RETRY_MAX_S", cls.live_retry_max_s),
        )

    def replace(self, **changes) -> Settings:
        """A copy with some fields changed (tests, CLI flags)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (tests, CLIs); None re-reads the environment next time."""
    global _settings
    _settings = settings
