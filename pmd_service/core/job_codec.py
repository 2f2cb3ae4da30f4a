"""arq's jobs and results as JSON, never pickle, so that whoever can write to Redis cannot run
code in the worker; each carries `v`, its shape, for rolling upgrades (docs/operations.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

_encoder = msgspec.json.Encoder(enc_hook=lambda obj: _encode_other(obj))
_decoder = msgspec.json.Decoder(dict[str, Any])

# The last millisecond `datetime` can hold (9999-12-31T23:59:59.999Z): arq makes a date of it.
MAX_TIME_MS = 253_402_300_799_999
# Far above any try arq makes (it counts up from 1), far below what overflows Redis' counter.
MAX_TRY = 2**31 - 1
# The shape of the jobs this release writes, and the newest it reads.
JOB_SHAPE = 1


class _JobFields(msgspec.Struct):
    """A job's fields as arq's worker uses them, and the service's `v` (a later shape fails)."""

    f: str
    a: list[Any]
    k: dict[str, Any]
    t: Annotated[int, msgspec.Meta(ge=0, le=MAX_TRY)] | None
    et: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]
    v: Annotated[int, msgspec.Meta(ge=1, le=JOB_SHAPE)] = 1


def _encode_other(obj: Any) -> Any:
    # A failed job's result is its exception, as text; anything else is refused at enqueue.
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise NotImplementedError(f"a job's data cannot hold a {type(obj).__name__}")


def serialize(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a job's (or a result's) fields as JSON, with the shape `v`."""
    return _encoder.encode({**data, "v": JOB_SHAPE})


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`: anything but a job's fields in their shape raises."""
    data = _decoder.decode(raw)
    msgspec.convert(data, _JobFields)
    return data
