"""What the token API takes and answers. A token's secret is answered once, by the create;
its hash is never answered."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from loupe_shared.contracts.bounds import StorableStr, Timestamp
from loupe_shared.kit.auth import Role, TokenRecord

TOKEN_ID = r"^[0-9a-f]{16}$"  # noqa: S105 (a pattern, not a secret)
TokenStatus = Literal["active", "expired", "revoked"]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[StorableStr, Field(min_length=1, max_length=100)] = Field(
        description="who or what uses it, e.g. line-7"
    )
    role: Role
    expires_at: Timestamp | None = Field(default=None, description="in the future; none: never")


class Token(BaseModel):
    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    status: TokenStatus

    @classmethod
    def of(cls, record: TokenRecord) -> "Token":
        status: TokenStatus = (
            "revoked" if record.revoked_at else ("active" if record.active else "expired")
        )
        return cls(
            id=record.id,
            name=record.name,
            role=record.role,
            created_at=record.created_at,
            created_by=record.created_by,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            status=status,
        )


class CreatedToken(Token):
    token: str = Field(description="the full bearer token: shown this once, never again")


class TokenList(BaseModel):
    items: list[Token]
