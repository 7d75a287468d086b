"""The admin API's request and response models (pydantic), and its OpenAPI 3.1 document built
from them: what the API accepts is exactly what the document says (unknown fields are refused).
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway.admin_rows import iso
from gateway.store.base import AuditEvent, Block

Scope = Literal["number", "account", "global", "program"]
Kind = Literal["deactivated", "optout", "carrier", "admin"]
FORBID = ConfigDict(extra="forbid")
Text = Field(min_length=1, max_length=500)
Name = Field(min_length=1, max_length=64)
BaseModelT = TypeVar("BaseModelT", bound=BaseModel)
NUMBER = "the mobile: E.164 (+14155550123), or national in optout.default_region"
COUNTERPART = ("originating number (scope number), system_id (account), system_id/program (program), "
               "empty for global")


class BlockAdd(BaseModel):
    model_config = FORBID

    number: str = Field(min_length=1, max_length=40, description=NUMBER)
    counterpart: str = Field("", max_length=80, description=COUNTERPART)
    scope: Scope | None = Field(None, description="default: optout.scope of the configuration")
    kind: Kind = Field("admin", description="admin is never lifted by START")
    reason: str = Text
    operator: str = Name


class BlockRemove(BaseModel):
    model_config = FORBID

    counterpart: str = Field("", max_length=80, description=COUNTERPART)
    scope: Scope | None = Field(None, description="default: optout.scope of the configuration")
    kind: Kind | None = Field(None, description="lift only a block of this kind (default: any)")
    reason: str = Text
    operator: str = Name


class OptoutIn(BaseModel):
    """A revocation of consent taken on another channel."""

    model_config = FORBID

    number: str = Field(min_length=1, max_length=40, description=NUMBER)
    channel: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                         description="where it was taken: voice, email, web, crm, ...")
    at: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False,
                             description="unix seconds when the consumer revoked (default: now)")
    counterpart: str = Field("", max_length=80, description=COUNTERPART + "; empty: every sender")
    scope: Scope | None = Field(None, description="default: global without a counterpart, else optout.scope")
    operator: str = Field("", max_length=64, description="who (or which system) took it")
    reason: str = Field("", max_length=500, description="a note: the call's reference, the form ...")


class BlockQuery(BaseModel):
    """Query parameters of GET /v1/blocks."""

    model_config = FORBID

    number: str | None = Field(None, min_length=1, max_length=40, description=NUMBER)
    scope: Scope | None = None
    kind: Kind | None = None
    counterpart: str | None = Field(None, max_length=80, description=COUNTERPART)
    account: str | None = Field(None, min_length=1, max_length=15,
                                description="an account's blocks: its own, its numbers' and its programs'")
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=400, description="next_cursor of the previous page")


class NoQuery(BaseModel):
    """Routes that take no query parameters refuse every one."""

    model_config = FORBID


class EventQuery(BaseModel):
    """Query parameters of GET /v1/events/{number}."""

    model_config = FORBID

    since: float = Field(0.0, ge=0, le=1e11, allow_inf_nan=False, description="unix seconds")
    until: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False, description="unix seconds (default: now)")
    limit: int = Field(1000, ge=1, le=100_000)


class BlockOut(BaseModel):
    number: str
    counterpart: str
    scope: str
    kind: str
    source: str
    created_at: float
    created_at_iso: str

    @classmethod
    def of(cls, b: Block) -> BlockOut:
        k = b.key
        return cls(number=k.number, counterpart=k.counterpart, scope=k.scope, kind=b.kind,
                   source=b.source, created_at=b.created_at, created_at_iso=iso(b.created_at))


class BlockPage(BaseModel):
    blocks: list[BlockOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: the last page")


class NumberBlocks(BaseModel):
    number: str
    blocked: bool
    blocks: list[BlockOut]


class KeyOut(BaseModel):
    number: str
    counterpart: str
    scope: str


class ChangeOut(BaseModel):
    changed: bool = Field(description="false: the store already was in that state")
    event_id: int = Field(description="the audit event")
    key: KeyOut
    block: BlockOut | None = Field(description="the key's block now; null: not blocked")


EVENT_FIELDS = tuple(f for f in AuditEvent.__dataclass_fields__ if f != "id")


class EventOut(BaseModel):
    id: int
    at: float
    at_iso: str
    op: str
    number: str
    counterpart: str
    account: str
    source: str
    text: str
    data_coding: int
    rule: str
    config_version: str
    carrier_message_id: str
    reply_text: str
    reply_message_id: str
    block_state: str
    scope: str
    kind: str
    mo_fingerprint: str
    alphabet: str
    operator: str
    reason: str

    @classmethod
    def of(cls, e: AuditEvent) -> EventOut:
        values = {f: getattr(e, f) for f in EVENT_FIELDS}
        return cls(id=e.id, at_iso=iso(e.at), **values)


class EventsOut(BaseModel):
    number: str
    events: list[EventOut]


class ReloadOut(BaseModel):
    ok: bool = Field(description="false: the file did not validate or a part did not load; nothing changed")
    changed: list[str] = Field(default=[], description="settings now in force, dotted (optout.replies)")
    restart_needed: list[str] = Field(default=[], description="changed in the file, kept until a restart")
    failed: list[str] = Field(default=[], description="<part>: <reason> of a reload that changed nothing")
    config_version: str = Field(default="", description="the keyword configuration version in the audit trail")
    at: float = Field(default=0.0, description="unix time of the reload")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = Field(None, description="one entry per invalid field")


REQUESTS: tuple[type[BaseModel], ...] = (BlockAdd, BlockRemove, OptoutIn)
RESPONSES: tuple[type[BaseModel], ...] = (BlockPage, NumberBlocks, ChangeOut, EventsOut, ReloadOut, Problem)


def dump(model: BaseModel) -> bytes:
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False).encode()
