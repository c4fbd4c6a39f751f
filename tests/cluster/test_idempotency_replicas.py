"""`Idempotency-Key` across replicas: the key a request claimed on one process of a service is
answered by the other from the bucket they share (three NATS nodes, the bucket at 3
replicas), so a client's retry that the gateway sends elsewhere still runs the work once."""

import uuid

import httpx

from loupe_stack.stack import Stack
from tests.catalog.helpers import new_program
from tests.conftest import auth


def test_a_key_claimed_on_one_replica_is_replayed_by_the_other(cluster: Stack) -> None:
    headers = {**auth(cluster.admin_token), "Idempotency-Key": f"replicas-{uuid.uuid4()}"}
    body = new_program()
    first_url, second_url = cluster.service_url("catalog", 1), cluster.service_url("catalog", 2)
    assert first_url != second_url
    with httpx.Client(timeout=30) as client:
        first = client.post(f"{first_url}/api/programs", json=body, headers=headers)
        assert first.status_code == 201, first.text
        again = client.post(f"{second_url}/api/programs", json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        other = client.post(f"{second_url}/api/programs", json=new_program(), headers=headers)
        assert other.status_code == 422, other.text
        listed = client.get(
            f"{second_url}/api/programs",
            params={"q": body["name"], "limit": 200},
            headers=auth(cluster.admin_token),
        )
        assert listed.status_code == 200, listed.text
        assert [p["id"] for p in listed.json()["items"] if p["name"] == body["name"]] == [
            first.json()["id"]
        ]
