"""Asks the inspection workers (`rpc.inspect.evaluate`, answered by any of them) to inspect
one capture with one revision; the catalog never runs OpenCV itself."""

import asyncio
import uuid

from nats.aio.client import Client
from nats.errors import NoRespondersError

from loupe_shared.contracts import subjects
from loupe_shared.contracts.inspect import EvaluationReply, EvaluationRequest, InspectedResult
from loupe_shared.kit.problems import Problem

# Images inspected at once (the workers share them out).
CONCURRENCY = 4
TIMEOUT_S = 60.0


class Evaluator:
    def __init__(self, nc: Client, namespace: str, timeout_s: float = TIMEOUT_S) -> None:
        self.nc = nc
        self.namespace = namespace
        self.timeout_s = timeout_s

    async def evaluate(
        self, program_id: uuid.UUID, revision: int, shas: list[str]
    ) -> dict[str, InspectedResult]:
        """Every capture's result; a worker's failure to answer is a 503 problem (nothing
        is stored then)."""
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(sha: str) -> tuple[str, InspectedResult]:
            async with slots:
                return sha, await self._ask(program_id, revision, sha)

        return dict(await asyncio.gather(*(one(sha) for sha in shas)))

    async def _ask(self, program_id: uuid.UUID, revision: int, sha: str) -> InspectedResult:
        body = EvaluationRequest(
            program_id=program_id, program_revision=revision, capture_sha256=sha
        ).model_dump_json()
        subject = subjects.subject(subjects.RPC_INSPECT_EVALUATE, self.namespace)
        try:
            answer = await self.nc.request(subject, body.encode(), timeout=self.timeout_s)
        except NoRespondersError:
            raise Problem(
                503,
                "No inspection worker is running; start one and run the test again.",
                headers={"Retry-After": "10"},
            ) from None
        except TimeoutError:  # nats-py's own subclass or the builtin one
            raise Problem(
                503, f"No inspection worker answered within {self.timeout_s:g} s; try again."
            ) from None
        reply = EvaluationReply.model_validate_json(answer.data)
        if reply.result is None:
            raise Problem(503, f"An inspection worker could not inspect {sha}: {reply.error}")
        return reply.result
