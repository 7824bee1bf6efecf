"""Rows, discovery, routing and concurrent /verify scoring against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from gym_servers import HeadServer, ResourcesServer

from ftcore.data.strategies import RowError
from ftcore.errors import FtcoreError
from ftcore_nemo_gym.data import NemoGymRows
from ftcore_nemo_gym.discovery import discover
from ftcore_nemo_gym.verify import Verifier

TOOL = {"type": "function", "name": "get_weather", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False}}  # fmt: skip


def row(answer="7", **extra):
    return {"responses_create_params": {"input": [{"role": "user", "content": "3+4="}], "tools": [TOOL]},
            "expected_answer": answer, **extra}  # fmt: skip


def settings(**keys):
    base = dict(nemo_gym_verify_timeout=2, nemo_gym_retries=1, nemo_gym_max_concurrency=8,
                nemo_gym_failure_reward=-1.0, nemo_gym_datasets=[])  # fmt: skip
    return SimpleNamespace(**(base | keys))


def formatted(rows, server=""):
    ds = SimpleNamespace(path="/nowhere.jsonl")
    out = [NemoGymRows().format_row(r, ds, settings()) for r in rows]
    return [o["nemo_gym_row"] for o in out], [server] * len(out)


def test_rows_become_prompts_and_keep_everything_for_verify():
    out = NemoGymRows().format_row(
        row(agent_ref={"name": "math_agent"}), SimpleNamespace(path="x"), settings()
    )
    assert out["prompt"] == [{"role": "user", "content": "3+4="}]
    assert json.loads(out["nemo_gym_row"])["responses_create_params"]["tools"] == [TOOL]
    assert out["nemo_gym_server"] == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["responses_create_params"]["tools"][0].pop("strict"), "lacks \"strict\": true"),
        (lambda r: r["responses_create_params"]["tools"][0]["parameters"].pop("additionalProperties"),
         "additionalProperties"),
        (lambda r: r["responses_create_params"].update(max_tokens=5), "keys NeMo Gym rejects: max_tokens"),
        (lambda r: r.pop("responses_create_params"), "missing field 'responses_create_params'"),
        (lambda r: r["responses_create_params"].update(input=[]), "input is missing or empty"),
        (lambda r: r["responses_create_params"]["input"][0].update(content=[
            {"type": "input_text", "text": "What is shown?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]),
         r"input\[0\].content has a part of type 'input_image': the prompt would lose it"),
    ],
)  # fmt: skip
def test_rows_nemo_gym_would_reject_are_refused_with_the_reason(change, message):
    bad = json.loads(json.dumps(row()))
    change(bad)
    with pytest.raises(RowError, match=message):
        NemoGymRows().format_row(bad, SimpleNamespace(path="x"), settings())


def test_text_parts_of_a_message_are_joined():
    parts = row()
    parts["responses_create_params"]["input"][0]["content"] = [
        {"type": "input_text", "text": "3+"},
        {"type": "input_text", "text": "4="},
        {"type": "refusal", "refusal": "?"},
    ]
    out = NemoGymRows().format_row(parts, SimpleNamespace(path="x"), settings())
    assert out["prompt"] == [{"role": "user", "content": "3+4=?"}]


def test_discovery_honours_the_head_port_and_routes_rows():
    with (
        ResourcesServer() as math,
        ResourcesServer() as code,
        HeadServer({"math": math.url, "code": code.url}, agents={"math_agent": "math"}) as head,
    ):
        servers = discover("127.0.0.1", head.port)
        verifier = Verifier(servers, settings())
        assert verifier.route({}, "code") == f"{code.url}/verify"
        assert verifier.route({"agent_ref": {"name": "math_agent"}}, "") == f"{math.url}/verify"
        with pytest.raises(FtcoreError, match="cannot tell which NeMo Gym resources server"):
            verifier.route({}, "")
        with pytest.raises(FtcoreError, match="no server named 'nope'"):
            verifier.route({}, "nope")
    with pytest.raises(
        FtcoreError, match=f"no NeMo Gym head server answered at http://127.0.0.1:{head.port}"
    ):
        discover("127.0.0.1", head.port, timeout=1)


def test_a_batch_is_scored_concurrently_from_the_response_text():
    with ResourcesServer(delay=0.2) as math, HeadServer({"math": math.url}) as head:
        verifier = Verifier(discover("127.0.0.1", head.port), settings(nemo_gym_max_concurrency=8))
        rows, servers = formatted([row("7"), row("9")] * 8)
        start = time.perf_counter()
        rewards = verifier.score(rows, servers, ["the answer is 7", "7"] * 8)
        elapsed = time.perf_counter() - start
    assert rewards == [1.0, 0.0] * 8
    assert 2 <= math.max_in_flight <= 8  # bounded concurrency
    assert elapsed < 16 * 0.2 / 2  # far faster than one request at a time
    assert not verifier.take_counts()[0]


def test_conversational_completions_are_scored_by_their_text():
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        verifier = Verifier(discover("127.0.0.1", head.port), settings())
        rows, servers = formatted([row("7")])
        assert verifier.score(rows, servers, [[{"role": "assistant", "content": "7"}]]) == [1.0]


@pytest.mark.parametrize(
    ("fault", "count", "expected", "reason"),
    [
        ("500", 1, 1.0, None),  # retried, then answered
        ("500", 5, -1.0, "HTTP 500"),
        ("malformed", 5, -1.0, "malformed answer"),
        ("slow", 5, -1.0, "timeout"),
    ],
)
def test_failures_are_retried_then_scored_and_counted(fault, count, expected, reason):
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        verifier = Verifier(discover("127.0.0.1", head.port), settings(nemo_gym_verify_timeout=1))
        math.faults[fault] = count
        rows, servers = formatted([row("7")])
        assert verifier.score(rows, servers, ["7"]) == [expected]
        failures = verifier.take_counts()[0]
        assert (dict(failures) == {reason: 1}) if reason else not failures
        assert math.calls == 2  # one try and one retry


def test_a_rejected_request_is_not_retried():
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        verifier = Verifier(discover("127.0.0.1", head.port), settings())
        bad = json.dumps(
            {"responses_create_params": {"input": "x", "max_tokens": 3}, "expected_answer": "7"}
        )
        assert verifier.score([bad], ["math"], ["7"]) == [-1.0]
        assert dict(verifier.take_counts()[0]) == {"rejected (422)": 1} and math.calls == 1


def test_lookahead_hands_each_new_batch_over_once_and_early():
    from ftcore_nemo_gym.rollouts import Lookahead

    handed, seen = [], []
    loader = Lookahead(["a", "a", "b", "b", "c"], handed.append)
    for batch in loader:
        seen.append((batch, list(handed)))
    assert handed == ["b", "c"]  # TRL's repeats of a generation batch are not fetched again
    assert seen[1] == ("a", ["b"]) and seen[3] == ("b", ["b", "c"])  # one batch ahead
    assert len(loader) == 5
