"""Settings from the environment: defaults, and clear errors for bad values."""

from __future__ import annotations

import pytest

from shared.config import Settings


def test_defaults_and_overrides():
    s = Settings.from_env({"MONGO_URI": "mongodb://db:27017/x", "UPLOAD_MAX_MB": "5", "WORKER_DEVICE": "GPU"})
    assert s.mongo_uri == "mongodb://db:27017/x"
    assert s.upload_max_bytes == 5 * 1024 * 1024
    assert s.worker_device == "gpu"
    assert Settings.from_env({}).redis_url == "redis://127.0.0.1:6379/0"


def test_visibility_timeout_outlasts_the_longest_task():
    s = Settings.from_env({"JOB_TIME_LIMIT_S": "100"})
    assert s.job_hard_limit_s > s.job_time_limit_s
    assert s.visibility_timeout_s > s.job_hard_limit_s
    # Long clips run as segments: the timeout is a small multiple of one segment's hard limit, not hours.
    d = Settings.from_env({})
    assert d.segment_hard_limit_s == d.segment_time_limit_s + 120
    assert d.visibility_timeout_s == 2 * d.segment_hard_limit_s < 2 * 3600
    assert Settings.from_env({"SEGMENT_TIME_LIMIT_S": "600"}).visibility_timeout_s == 1440


@pytest.mark.parametrize("env, needle", [
    ({"UPLOAD_MAX_MB": "lots"}, "UPLOAD_MAX_MB='lots' is not a whole number"),
    ({"WORKER_DEVICE": "tpu"}, "WORKER_DEVICE='tpu'"),
    ({"CLASSIFIER_PRECISION": "fp16"}, "CLASSIFIER_PRECISION='fp16'"),
    ({"CONNECT_TIMEOUT_S": "soon"}, "CONNECT_TIMEOUT_S='soon' is not a number"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ValueError, match=needle):
        Settings.from_env(env)
