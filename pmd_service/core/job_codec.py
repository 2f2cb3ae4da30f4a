"""arq's jobs and results as JSON, never pickle.

arq stores each job (and, when kept, its result) in Redis as the bytes its serializer makes;
its default is pickle, so whoever could write a job key of that Redis ran code in the worker
that read it. JSON carries only data: a job written by anyone else is at worst a call of one
of the worker's own functions, each of which checks its row in PostgreSQL first.

Every Worker and every ArqRedis of the service are given these two functions
(core/redis_client.py, worker.py). A job whose bytes are not this JSON (a pickle, garbage) is
failed by arq with a logged `DeserializationError`, and the worker goes on.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(enc_hook=lambda obj: _encode_other(obj))
_decoder = msgspec.json.Decoder(dict[str, Any])


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
    """arq's `job_deserializer`: only a JSON object is a job; anything else raises (arq fails
    that job and logs it)."""
    return _decoder.decode(raw)
