"""Every service's OpenAPI states the error answers its routes give, as problem documents,
so client generators see them."""

from typing import Any

import httpx
import pytest

from tests.conftest import auth

pytestmark = pytest.mark.e2e
SERVICES = ("catalog", "images", "backup", "inspect")
PROBLEM = "application/problem+json"


def _document(gateway: httpx.Client, service: str) -> dict[str, Any]:
    answer = gateway.get(f"/openapi/{service}.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


@pytest.mark.parametrize("service", SERVICES)
def test_every_api_operation_documents_its_errors_as_problems(
    gateway: httpx.Client, service: str
) -> None:
    document = _document(gateway, service)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["Problem"]["properties"]) >= {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "request_id",
    }
    for path, operations in document["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{service} {method.upper()} {path}"
            assert {"401", "default"} <= set(responses), where
            for status, answer in responses.items():
                if status == "default" or int(status) >= 400:
                    assert list(answer["content"]) == [PROBLEM], f"{where} {status}"
            if method != "get":
                assert "Retry-After" in responses["503"]["headers"], where


def test_if_match_routes_document_412_and_428(gateway: httpx.Client) -> None:
    put = _document(gateway, "catalog")["paths"]["/api/programs/{program_id}"]["put"]
    assert {"412", "428", "422"} <= set(put["responses"])
    schema = put["responses"]["422"]["content"][PROBLEM]["schema"]
    assert schema == {"$ref": "#/components/schemas/ValidationProblem"}


def test_a_validation_error_is_answered_as_documented(
    gateway: httpx.Client, admin_token: str
) -> None:
    answer = gateway.post("/api/programs", headers=auth(admin_token), json={"name": 5})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert {"type", "title", "status", "detail", "request_id", "errors"} <= set(body)
    assert all({"field", "message"} <= set(e) for e in body["errors"])


@pytest.mark.parametrize("service", SERVICES)
def test_every_success_answer_has_a_schema(gateway: httpx.Client, service: str) -> None:
    """Client generators type a call by its success answer: every one has a media type with a
    schema (JSON with properties or a reference, bytes as binary, an event stream's items)."""
    document = _document(gateway, service)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status == "default" or not 200 <= int(status) < 300 or status == "204":
                    continue
                where = f"{service} {method.upper()} {path} {status}"
                assert answer.get("content"), where
                for media_type, content in answer["content"].items():
                    schema = content.get("schema") or content.get("itemSchema")
                    assert schema, f"{where} {media_type}"
                    assert schema != {}, f"{where} {media_type}"
                    if schema.get("type") == "object":
                        assert "properties" in schema or "additionalProperties" in schema, where
