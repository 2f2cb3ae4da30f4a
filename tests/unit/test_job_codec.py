"""Jobs cross the releases beside each other in a rolling upgrade (core/job_codec.py): each
reads the other's, and a job of a shape this release does not know is refused unread."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import pytest
from arq.jobs import DeserializationError, deserialize_job, serialize_job

from pmd_service.core import job_codec
from pmd_service.features.bdr.job_sql import JOB_NAME


def _now() -> int:
    return int(time.time() * 1000)


def test_the_previous_release_reads_this_releases_jobs() -> None:
    bdr_id = str(uuid.uuid4())
    raw = serialize_job(JOB_NAME, (bdr_id,), {}, None, _now(), serializer=job_codec.serialize)
    # The release before `v` (0.1.0) took any JSON object, arq reading its fields by name.
    previous = msgspec.json.Decoder(dict[str, Any]).decode
    job = deserialize_job(raw, deserializer=previous)
    assert (job.function, list(job.args), job.kwargs) == (JOB_NAME, [bdr_id], {})
    assert msgspec.json.decode(raw)["v"] == job_codec.JOB_SHAPE


def test_this_release_reads_the_previous_releases_jobs_and_refuses_a_later_shape() -> None:
    bdr_id = str(uuid.uuid4())
    written: dict[str, Any] = {"t": None, "f": JOB_NAME, "a": [bdr_id], "k": {}, "et": _now()}
    job = deserialize_job(msgspec.json.encode(written), deserializer=job_codec.deserialize)
    assert (job.function, list(job.args)) == (JOB_NAME, [bdr_id])
    later = msgspec.json.encode(written | {"v": job_codec.JOB_SHAPE + 1})
    with pytest.raises(DeserializationError):
        deserialize_job(later, deserializer=job_codec.deserialize)
