"""The Convex sync protocol's messages (protocol reference §1–§2), decoded once at the socket.

Client messages are one msgspec tagged union (`type` is the tag), so a frame is validated and typed
in a single decode; anything malformed becomes a `ProtocolError` right there. Server messages are
built by hand as bytes: a Transition's query results are pre-encoded once per distinct query and
spliced into every socket's frame, so N sockets holding one query cost one encode, not N.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

import msgspec

__all__ = [
    "Connect", "ModifyQuerySet", "Add", "Remove", "Mutation", "Action", "Authenticate", "Event",
    "ClientMessage", "ProtocolError", "decode_client_message", "encode_ts", "decode_ts",
    "StateVersion", "mutation_response", "action_response", "auth_error", "fatal_error", "PING",
]


class Connect(msgspec.Struct, tag="Connect", tag_field="type"):
    sessionId: str
    connectionCount: int = 0
    lastCloseReason: str | None = None
    maxObservedTimestamp: str | None = None
    clientTs: float | None = None


class Add(msgspec.Struct, tag="Add", tag_field="type"):
    queryId: int
    udfPath: str
    args: list[Any]
    journal: str | None = None
    componentPath: str | None = None


class Remove(msgspec.Struct, tag="Remove", tag_field="type"):
    queryId: int


class ModifyQuerySet(msgspec.Struct, tag="ModifyQuerySet", tag_field="type"):
    baseVersion: int
    newVersion: int
    modifications: list[Add | Remove]


class Mutation(msgspec.Struct, tag="Mutation", tag_field="type"):
    requestId: int
    udfPath: str
    args: list[Any]
    componentPath: str | None = None


class Action(msgspec.Struct, tag="Action", tag_field="type"):
    requestId: int
    udfPath: str
    args: list[Any]
    componentPath: str | None = None


class Authenticate(msgspec.Struct, tag="Authenticate", tag_field="type"):
    tokenType: Literal["Admin", "User", "None"]
    baseVersion: int
    value: str | None = None
    impersonating: dict[str, Any] | None = None
    acting_as: dict[str, Any] | None = None


class Event(msgspec.Struct, tag="Event", tag_field="type"):
    eventType: str = ""
    event: Any = None


ClientMessage = Connect | ModifyQuerySet | Mutation | Action | Authenticate | Event
_decoder = msgspec.json.Decoder(ClientMessage)


class ProtocolError(Exception):
    """A frame that is not a valid client message (the connection gets a FatalError)."""


def decode_client_message(frame: str | bytes) -> ClientMessage:
    try:
        return _decoder.decode(frame)
    except msgspec.DecodeError as e:
        raise ProtocolError(f"Invalid client message: {e}") from None
    except RecursionError:  # the JSON parser gives up around a thousand levels
        raise ProtocolError("Invalid client message: Value is too nested (maximum nesting 64)") from None


# -- timestamps ------------------------------------------------------------------------------------
_pack_u64 = struct.Struct("<Q").pack
_unpack_u64 = struct.Struct("<Q").unpack


def encode_ts(ts: int) -> str:
    return base64.b64encode(_pack_u64(ts)).decode()


def decode_ts(text: str) -> int:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 8:
        raise ValueError("a timestamp is 8 bytes")
    return _unpack_u64(raw)[0]


# -- server messages -------------------------------------------------------------------------------
class StateVersion(msgspec.Struct, frozen=True):
    querySet: int
    identity: int
    ts: int

    def encode(self) -> bytes:
        return b'{"querySet":%d,"identity":%d,"ts":"%s"}' % (self.querySet, self.identity, encode_ts(self.ts).encode())


_enc = msgspec.json.Encoder(order="sorted")
PING = b'{"type":"Ping"}'


def mutation_response(request_id: int, success: bool, result: Any, ts: int | None, log_lines: list[str],
                      error_data: Any = msgspec.UNSET) -> bytes:
    msg: dict[str, Any] = {"type": "MutationResponse", "requestId": request_id, "success": success,
                           "result": result, "ts": encode_ts(ts) if ts is not None else None,
                           "logLines": log_lines}
    if error_data is not msgspec.UNSET:
        msg["errorData"] = error_data
    return _enc.encode(msg)


def action_response(request_id: int, success: bool, result: Any, log_lines: list[str],
                    error_data: Any = msgspec.UNSET) -> bytes:
    msg: dict[str, Any] = {"type": "ActionResponse", "requestId": request_id, "success": success,
                           "result": result, "logLines": log_lines}
    if error_data is not msgspec.UNSET:
        msg["errorData"] = error_data
    return _enc.encode(msg)


def auth_error(error: str, base_version: int, attempted: bool) -> bytes:
    return _enc.encode({"type": "AuthError", "error": error, "baseVersion": base_version,
                        "authUpdateAttempted": attempted})


def fatal_error(error: str) -> bytes:
    return _enc.encode({"type": "FatalError", "error": error})


def encode_json(obj: Any) -> bytes:
    return _enc.encode(obj)
