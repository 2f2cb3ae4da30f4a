"""arq's jobs and results as JSON, never pickle, so that whoever can write to Redis cannot run
code in the worker.

Every Worker and ArqRedis of the service is given these two functions. A job whose bytes are not
this JSON, or whose fields lack the shape arq's worker reads outside its own error handling, is
failed by arq with a logged `DeserializationError` instead of ending the worker process.

Each job also carries `v`, the shape of the service's jobs (their functions and arguments), so
that the releases beside each other in a rolling upgrade can tell one from another: a release
that changes the shape reads the previous one too, and writes the new one only a release later
(docs/operations.md, "Upgrades"). arq reads its own fields by name, so the release before `v`
ignores it; a job without one is of shape 1.
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
    """The fields of a job (a result has them too, and more) as arq's worker uses them: `f` a
    key of its functions, `a` and `k` spread into a call, `t` compared with its own try count
    (None when the enqueuer named none), `et` made a date; and the service's `v`: a later
    release's shape is failed here, unread."""

    f: str
    a: list[Any]
    k: dict[str, Any]
    t: Annotated[int, msgspec.Meta(ge=0, le=MAX_TRY)] | None
    et: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]
    v: Annotated[int, msgspec.Meta(ge=1, le=JOB_SHAPE)] = 1


def _encode_other(obj: Any) -> Any:
    # A failed job's result is the exception that ended it (arq serializes one even when no
    # result is kept): its class and message, as text. Anything else a job's arguments hold is
    # a bug of the caller, refused at enqueue time (arq's SerializationError).
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise NotImplementedError(f"a job's data cannot hold a {type(obj).__name__}")


def serialize(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a job's (or a result's) fields as JSON, with the shape `v`."""
    return _encoder.encode({**data, "v": JOB_SHAPE})


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`: only a JSON object with a job's fields in their shape is a job;
    anything else raises (arq fails that job, removes it and logs it)."""
    data = _decoder.decode(raw)
    msgspec.convert(data, _JobFields)
    return data
