"""The LLM judge against a fake OpenAI-compatible server on localhost: canned verdicts, garbage,
HTTP 500/429 and timeouts; retried with a bound, failures reported, nothing asked twice on a re-run."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from spell.config import EvalConfig
from spell.eval.benchmarks import EvalItem
from spell.eval.judge import JudgeCache, OpenAIJudge, resolve_api_key
from spell.eval.runner import run_benchmark

SECRET = "sk-test-PLANTEDKEY-0123456789abcdef"


class FakeJudge(BaseHTTPRequestHandler):
    hits: ClassVar[Counter] = Counter()
    auth: ClassVar[set] = set()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        pred = prompt.split("Predicted Answer: ")[1].split("\n")[0]
        FakeJudge.hits[pred] += 1
        FakeJudge.auth.add(self.headers.get("Authorization"))
        n = FakeJudge.hits[pred]
        if pred.startswith("slow"):
            time.sleep(1.5)
        if pred.startswith("flaky") and n <= 2:
            return self._send(500, {"error": {"message": "boom"}})
        if pred.startswith("limited") and n <= 1:
            return self._send(429, {"error": {"message": "slow down"}})
        if pred.startswith("down"):
            return self._send(503, {"error": {"message": "down"}})
        if pred.startswith("garbage"):
            return self._raw(200, b"<html>not json")
        if pred.startswith("rambling"):
            return self._reply("I could not decide either way.")
        verdict = "[[YES]]" if "right" in pred or pred.startswith(("flaky", "limited")) else "[[NO]]"
        return self._reply(f"Explanation: compared.\nDecision: {verdict}")

    def _reply(self, text):
        self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, code, obj):
        self._raw(code, json.dumps(obj).encode())

    def _raw(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    FakeJudge.hits = Counter()
    FakeJudge.auth = set()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


PREDICTIONS = [
    "right answer",
    "wrong answer",
    "flaky right",
    "limited right",
    "garbage",
    "slow thing",
    "rambling",
    "down",
]


def _items():
    return [EvalItem(f"q{i}", "hotpotqa", "ctx", f"Question {i}?", None, ("gold",)) for i in range(len(PREDICTIONS))]


def _rollout(ids, params):
    return [
        {
            "completions": [
                {"text": f"The correct answer is {p}.", "token_ids": [1, 2], "finish_reason": "stop"}
                for _ in range(params["n"])
            ]
        }
        for p in PREDICTIONS[: len(ids)]
    ]


def test_judge_scores_retries_failures_and_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SPELL_JUDGE_API_KEY", SECRET)
    cfg = EvalConfig(n_samples=2, pass_k=[1, 2], judge="openai")
    cache = tmp_path / "judge_cache.jsonl"
    judge = OpenAIJudge(
        server,
        "judge",
        resolve_api_key("SPELL_JUDGE_API_KEY", ""),
        JudgeCache(cache),
        concurrency=4,
        timeout=0.5,
        retries=2,
        backoff=0.01,
    )
    assert SECRET not in repr(judge)
    res = run_benchmark("hotpotqa", _items(), cfg, lambda ps: [[1, 2, 3] for _ in ps], _rollout, judge)
    by_pred = {s["prediction"]: s for s in res.samples}
    assert by_pred["right answer"]["judge"] == 1 and by_pred["right answer"]["score"] == 1.0
    assert by_pred["wrong answer"]["judge"] == 0 and by_pred["wrong answer"]["score"] == 0.0
    assert by_pred["flaky right"]["judge"] == 1  # two HTTP 500s, then an answer
    assert by_pred["limited right"]["judge"] == 1  # one 429, then an answer
    for bad in ("garbage", "slow thing", "down"):
        assert by_pred[bad]["judge"] is None and by_pred[bad]["judge_error"], bad
    assert by_pred["rambling"]["judge"] is None and by_pred["rambling"]["judge_error"] is None
    assert FakeJudge.hits["down"] == 2 * 3  # each of 2 samples: 1 try + 2 retries, then given up
    assert res.summary["judge_failures"] == 6  # garbage, slow, down x 2 samples
    assert res.summary["score"] == pytest.approx(3 / 8)
    assert f"Bearer {SECRET}" in FakeJudge.auth  # the key reached the server...
    assert SECRET not in cache.read_text()  # ...but is stored nowhere

    # a re-run asks nothing that was answered before
    before = sum(FakeJudge.hits.values())
    judge2 = OpenAIJudge(server, "judge", SECRET, JudgeCache(cache), timeout=0.5, retries=0, backoff=0.01)
    res2 = run_benchmark("hotpotqa", _items(), cfg, lambda ps: [[1, 2, 3] for _ in ps], _rollout, judge2)
    answered = {"right answer", "wrong answer", "flaky right", "limited right", "rambling"}
    asked_again = sum(FakeJudge.hits.values()) - before
    assert asked_again == 2 * (len(PREDICTIONS) - len(answered))  # only the failed ones are retried
    assert judge2.stats["cached"] == 2 * len(answered)
    assert {s["prediction"]: s["judge"] for s in res2.samples}["right answer"] == 1


def test_longbench_v2_is_never_judged(server, tmp_path):
    judge = OpenAIJudge(server, "judge", "k", JudgeCache(tmp_path / "c.jsonl"), timeout=0.5, retries=0)
    item = EvalItem("m", "longbench-v2", "ctx", "Q?", dict(zip("ABCD", "abcd", strict=True)), ("A",))

    def rollout(ids, params):
        return [{"completions": [{"text": "The correct answer is (A)", "token_ids": [1], "finish_reason": "stop"}]}]

    res = run_benchmark("longbench-v2", [item], EvalConfig(n_samples=1, pass_k=[1]), lambda ps: [[1]], rollout, judge)
    assert res.summary["score"] == 1.0 and sum(FakeJudge.hits.values()) == 0
    assert res.summary["judge"] is None and res.questions[0]["mean_judge"] is None


def test_unreachable_judge_gives_no_verdict_and_no_crash(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = JudgeCache(tmp_path / "c.jsonl")
    judge = OpenAIJudge(f"http://127.0.0.1:{port}/v1", "judge", "k", cache, timeout=0.5, retries=2, backoff=0.01)
    out = judge.judge(["Q1", "Q2"])
    assert [(r.verdict, r.error, r.attempts) for r in out] == [(None, "APIConnectionError", 3)] * 2
    assert judge.stats["failures"] == 2 and judge.stats["retries"] == 4
