from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from loupe_catalog.state import Catalog
from loupe_catalog.tokens import service
from loupe_catalog.tokens.schemas import TOKEN_ID, CreatedToken, Token, TokenCreate, TokenList
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission, Principal, TokenStore, require
from loupe_shared.kit.state import kit_state

router = APIRouter(prefix="/api/tokens", tags=["tokens"])
CanManage = Annotated[Principal, Depends(require(Permission.TOKENS_MANAGE))]
TokenId = Annotated[str, Path(pattern=TOKEN_ID, description="the 16 hex digits after loupe_")]


def _store(request: Request) -> TokenStore:
    return kit_state(request.app).connected().tokens


Store = Annotated[TokenStore, Depends(_store)]


@router.get("", response_model=TokenList, summary="API tokens (never their secrets)")
async def list_tokens(
    store: Store,
    _: CanManage,
    include_revoked: Annotated[bool, Query(description="revoked tokens too")] = False,
) -> TokenList:
    return TokenList(items=await service.list_tokens(store, include_revoked=include_revoked))


@router.post(
    "",
    status_code=201,
    response_model=CreatedToken,
    summary="Create a token; the answer is the only place its secret is ever shown",
)
async def create_token(
    body: TokenCreate, request: Request, store: Store, catalog: Catalog, principal: CanManage
) -> CreatedToken:
    actor = Actor.of(request, principal)
    return await service.create(store, catalog.js, catalog.settings.namespace, actor, body)


@router.delete(
    "/{token_id}",
    response_model=Token,
    summary="Revoke a token (every service refuses it within seconds)",
    description=(
        "Every service refuses the token within its token cache's lifetime "
        "(`<PREFIX>TOKEN_CACHE_TTL_S`, 2 s by default). Revoking a revoked token answers it "
        "again. A token cannot revoke itself (409): use another admin token or the CLI."
    ),
)
async def revoke_token(
    token_id: TokenId, request: Request, store: Store, catalog: Catalog, principal: CanManage
) -> Token:
    actor = Actor.of(request, principal)
    return await service.revoke(store, catalog.js, catalog.settings.namespace, actor, token_id)
