"""arq's jobs and results as JSON, never pickle.

arq stores each job (and, when kept, its result) in Redis as the bytes its serializer makes;
its default is pickle, so whoever could write a job key of that Redis ran code in the worker
that read it. JSON carries only data: a job written by anyone else is at worst a call of one
of the worker's own functions, each of which checks its row in PostgreSQL first.

Every Worker and every ArqRedis of the service are given these two functions
(core/redis_client.py, worker.py). A job whose bytes are not this JSON (a pickle, garbage), or
whose fields do not have the shape arq's worker uses them in, is failed by arq with a logged
`DeserializationError`, and the worker goes on: arq reads those fields outside its own error
handling (a try count that is text, an enqueue time that is no date, a function name that is a
list each ended the worker process, and the job, still queued, ended every restart too).
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


class _JobFields(msgspec.Struct):
    """The fields of a job (a result has them too, and more) as arq's worker uses them: `f` a
    key of its functions, `a` and `k` spread into a call, `t` compared with its own try count
    (None when the enqueuer named none), `et` made a date."""

    f: str
    a: list[Any]
    k: dict[str, Any]
    t: Annotated[int, msgspec.Meta(ge=0, le=MAX_TRY)] | None
    et: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]


def _encode_other(obj: Any) -> Any:
    # A failed job's result is the exception that ended it (arq serializes one even when no
    # result is kept): its class and message, as text. Anything else a job's arguments hold is
    # a bug of the caller, refused at enqueue time (arq's SerializationError).
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise NotImplementedError(f"a job's data cannot hold a {type(obj).__name__}")


def serialize(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a job's (or a result's) fields as JSON."""
    return _encoder.encode(data)


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`: only a JSON object with a job's fields in their shape is a job;
    anything else raises (arq fails that job, removes it and logs it)."""
    data = _decoder.decode(raw)
    msgspec.convert(data, _JobFields)
    return data
