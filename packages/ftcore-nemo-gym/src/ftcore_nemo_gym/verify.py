"""Scoring a batch of completions against NeMo Gym ``/verify``, concurrently.

Each completion becomes one request: the dataset row (its ``responses_create_params`` with tools,
and its extras) plus a ``response`` holding the completion as one assistant message. Requests run
on one async HTTP client with at most ``nemo_gym_max_concurrency`` in flight. A request that fails
(connection, timeout, 5xx, malformed JSON, no ``reward``) is retried with backoff; after the last
try the completion gets ``nemo_gym_failure_reward`` and is counted in ``failures``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")


def response_body(text: str) -> dict[str, Any]:
    """The smallest ``NeMoGymResponse`` that NeMo Gym accepts: one assistant message."""
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "created_at": int(time.time()),
        "model": "ftcore-policy",
        "object": "response",
        "output": [{
            "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }  # fmt: skip


def completion_text(completion: Any) -> str:
    """TRL's completion: text, or a list of messages (conversational prompts)."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


class Verifier:
    """Routes rows to resources servers and scores completions; counts what failed."""

    def __init__(self, servers: Any, cfg: Any):
        self.servers = servers
        self.timeout = cfg.nemo_gym_verify_timeout
        self.retries = cfg.nemo_gym_retries
        self.concurrency = cfg.nemo_gym_max_concurrency
        self.failure_reward = cfg.nemo_gym_failure_reward
        self.failures: Counter = Counter()  # reason -> count, since the last log
        self.successes = 0  # calls answered, since the last log
        self.requests = 0
        self._lock = threading.Lock()

    def route(self, row: dict[str, Any], dataset_server: str) -> str:
        """The ``/verify`` URL of a row: its dataset's server, its agent's, or the only one."""
        name = dataset_server
        if not name and isinstance(row.get("agent_ref"), dict):
            agent = row["agent_ref"]["name"]
            kind = self.servers.kind(agent)
            name = (
                agent
                if kind == "resources_servers"
                else self.servers.resources_server_of_agent(agent)
            )
        if not name:
            candidates = self.servers.names("resources_servers")
            if len(candidates) != 1:
                raise FtcoreError(
                    "cannot tell which NeMo Gym resources server scores these rows "
                    f"(servers: {', '.join(candidates) or 'none'}); set server_name in "
                    "nemo_gym_datasets or agent_ref in the rows"
                )
            name = candidates[0]
        return f"{self.servers.url(name)}/verify"

    def score(self, rows: list[str], servers: list[str], completions: list[Any]) -> list[float]:
        """Rewards of ``completions``; ``rows`` are the JSON rows, ``servers`` their dataset's server."""
        jobs = []
        for row_json, server, completion in zip(rows, servers, completions):
            row = json.loads(row_json)
            body = {**row, "response": response_body(completion_text(completion))}
            jobs.append((self.route(row, server), body))
        return _run(post_all(jobs, self._one, self.concurrency, self.timeout))

    async def _one(self, client: Any, gate: asyncio.Semaphore, url: str, body: dict) -> float:
        def reward(answer: dict) -> float:
            value = float(answer["reward"])
            with self._lock:
                self.requests += 1
            self.count_success()
            return value

        try:
            return await post_with_retries(client, gate, url, body, reward, self.retries)
        except RequestFailed as failure:
            self.count_failure(failure.reason)
            return self.failure_reward

    def count_failure(self, reason: str) -> None:
        with self._lock:
            self.failures[reason] += 1

    def count_success(self) -> None:
        with self._lock:
            self.successes += 1

    def take_counts(self) -> tuple[Counter, int]:
        """``(failures by reason, calls answered)`` since the last call, and start counting anew."""
        with self._lock:
            taken = self.failures, self.successes
            self.failures, self.successes = Counter(), 0
        return taken


async def post_all(
    jobs: list[tuple[str, dict]], one: Any, concurrency: int, timeout: float
) -> list:
    """``one(client, gate, url, body)`` for every job on one async client, ``concurrency`` at a time."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        return list(await asyncio.gather(*(one(client, gate, url, body) for url, body in jobs)))


class RequestFailed(Exception):
    """A request that failed after its retries; ``reason`` is counted in the failure metric."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def post_with_retries(client: Any, gate: asyncio.Semaphore, url: str, body: dict,
                            parse: Any, retries: int) -> Any:  # fmt: skip
    """``parse(answer JSON)`` of ``POST url``; failures are retried with backoff, a 422 is not.

    Connection errors, timeouts, 5xx and answers ``parse`` cannot read (``ValueError``,
    ``KeyError``, ``TypeError``) are retried; after the last try :class:`RequestFailed` says why.
    """
    import httpx

    reason = ""
    for attempt in range(retries + 1):
        async with gate:
            try:
                response = await client.post(url, json=body)
                if response.status_code == 422:
                    log.warning(
                        "ftcore: NeMo Gym %s rejected a request: %s", url, response.text[:300]
                    )
                    raise RequestFailed("rejected (422)")  # the request itself is wrong
                response.raise_for_status()
                return parse(response.json())
            except httpx.TimeoutException:
                reason = "timeout"
            except httpx.HTTPStatusError as error:
                reason = f"HTTP {error.response.status_code}"
            except httpx.HTTPError as error:
                reason = type(error).__name__
            except (ValueError, KeyError, TypeError) as error:
                reason = "malformed answer"
                log.warning("ftcore: NeMo Gym %s answered something unreadable: %s", url, error)
        if attempt < retries:
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
    raise RequestFailed(reason)


def _run(coroutine: Any) -> Any:
    """Run ``coroutine`` to completion, also from a thread that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(value=asyncio.run(coroutine)))
    thread.start()
    thread.join()
    return result["value"]
