"""Tenancy and access: who is calling, which tenant they act in, and loading documents of that tenant.

    caller = await current_caller(ctx)          # raises UNAUTHENTICATED when nobody is calling
    task = await load(ctx, "tasks", args["taskId"], caller.tenant_id)

Rules (the tenant never comes from a public function's arguments):
- a caller with an identity (a verified JWT, or the admin impersonating a user) acts in the tenant
  named by the identity's claim `$NOVA_TENANT_CLAIM` (default "tenantId");
- the admin key without an identity (agents, OpenClaw, `python -m engine run`) acts in
  `$NOVA_AGENT_TENANT` (default "default");
- with `$NOVA_LOCAL_TENANT=<name>`, unauthenticated callers act as that tenant (local single-user
  set-up; a loud warning is logged when the app loads);
- anybody else is refused with UNAUTHENTICATED.
A document of another tenant is reported exactly like a missing one (NOT_FOUND), so ids do not leak.
Settings are deployment environment variables (`engine.env`: the process environment, then the
env file of `python -m engine env set`), read on every call.
"""

import logging
import sys
from dataclasses import dataclass
from typing import Any

from engine import env

from ._errors import app_error

TENANT_CLAIM_ENV = "NOVA_TENANT_CLAIM"
AGENT_TENANT_ENV = "NOVA_AGENT_TENANT"
LOCAL_TENANT_ENV = "NOVA_LOCAL_TENANT"
DEFAULT_AGENT_TENANT = "default"
# The user id of a caller without an identity (the admin, or local mode's single user).
LOCAL_USER_ID = "user"

_local = env.get(LOCAL_TENANT_ENV)
if _local:
    # Straight to stderr as well as to logging: the engine's log routing may not show warnings
    # emitted outside a function, and this one must be seen at start.
    _banner = (f"!!! {LOCAL_TENANT_ENV}={_local}: UNAUTHENTICATED CALLERS ACT AS TENANT {_local!r}. "
               "Local single-user mode: never expose this server to a network. !!!")
    sys.stderr.write(f"\n{_banner}\n\n")
    sys.stderr.flush()
    logging.getLogger("nova.tenancy").warning(_banner)


@dataclass(frozen=True, slots=True)
class Caller:
    tenant_id: str
    identity: dict[str, Any] | None
    admin: bool

    @property
    def user_id(self) -> str:
        """The calling user's id: the identity's `subject`, else the local user."""
        if self.identity is not None and isinstance(self.identity.get("subject"), str):
            return self.identity["subject"]
        return LOCAL_USER_ID


def agent_tenant() -> str:
    """The tenant the admin key (agents, OpenClaw) acts in."""
    return env.get(AGENT_TENANT_ENV) or DEFAULT_AGENT_TENANT


async def current_caller(ctx: Any) -> Caller:
    identity = await ctx.auth.get_user_identity()
    admin = ctx.auth.is_admin()
    if identity is not None:
        claim = env.get(TENANT_CLAIM_ENV) or "tenantId"
        tenant = identity.get(claim)
        if not isinstance(tenant, str) or not tenant:
            raise app_error("NO_TENANT", f'The caller\'s identity has no "{claim}" claim naming its tenant.')
        return Caller(tenant, identity, admin)
    if admin:
        return Caller(env.get(AGENT_TENANT_ENV) or DEFAULT_AGENT_TENANT, None, True)
    local = env.get(LOCAL_TENANT_ENV)
    if local:
        return Caller(local, None, False)
    raise app_error("UNAUTHENTICATED", "Sign in first: this function needs an authenticated caller.")


async def load(ctx: Any, table: str, doc_id: Any, tenant_id: str, *, code: str = "NOT_FOUND") -> dict[str, Any]:
    """The document `doc_id` of `table` in the caller's tenant, or a ConvexError `code`.

    A string that is not an id of `table`, a deleted document and another tenant's document all
    read the same: not found."""
    normalized = ctx.db.normalize_id(table, doc_id)
    doc = await ctx.db.get(normalized) if normalized is not None else None
    if doc is None or doc.get("tenantId") != tenant_id:
        raise app_error(code, f'No document with id {doc_id!r} in "{table}".', table=table, id=str(doc_id))
    return doc


async def load_agent(ctx: Any, agent_id: Any, tenant_id: str) -> dict[str, Any]:
    """An agent of the tenant; anything else (a user id, another table's id, a foreign agent) is
    NOT_AN_AGENT."""
    return await load(ctx, "agents", agent_id, tenant_id, code="NOT_AN_AGENT")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a write is attributed to: an agent of the tenant, or a user."""

    id: str
    type: str  # "user" | "agent"
    name: str
    agent: dict[str, Any] | None = None

    def activity_fields(self) -> dict[str, Any]:
        return {"agentId": self.id} if self.type == "agent" else {"userId": self.id}


async def resolve_actor(ctx: Any, caller: Caller, actor_id: str | None, actor_type: str | None) -> Actor:
    """The author/actor named by a function's arguments, checked against the caller.

    Agents must be agents of the tenant (NOT_AN_AGENT). An authenticated non-admin caller can act as
    any agent of its tenant (agents run with their own credentials) but as no other user (FORBIDDEN)."""
    if actor_type == "agent":
        agent = await load_agent(ctx, actor_id, caller.tenant_id)
        return Actor(agent["_id"], "agent", agent["name"], agent)
    user_id = actor_id if actor_id is not None else caller.user_id
    if caller.identity is not None and not caller.admin and user_id != caller.user_id:
        raise app_error("FORBIDDEN", "A user can only act as themselves.", userId=user_id)
    return Actor(user_id, "user", user_id)
