"""The LLM judge (spec Part B §6.5): is the gold answer present in the prediction, in substance?

An OpenAI-compatible endpoint (async, bounded concurrency, per-request timeout, bounded retries with
exponential backoff on timeouts, connection errors, HTTP 429 and 5xx) or the evaluated model itself
(`judge: self`, fully offline). Replies are cached by (judge model, prompt) in a JSONL file, so a re-run
asks nothing twice. The API key comes from the environment or a secret file and is never logged,
stored or put in an error message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spell.eval.metrics import parse_judgment

JUDGE_PROMPT = """You are grading an answer to a question against the ground-truth answer.

Decide whether the ground-truth answer is present in the predicted answer. Compare substance and key \
facts, not wording: synonyms, abbreviations, extra context or a different format are fine, but a \
different or missing key fact is not.

Question: {question}
Predicted Answer: {prediction}
Ground Truth Answer: {gold}

Reply in this format:
Explanation: <one or two sentences>
Decision: [[YES]] or [[NO]]"""


@dataclass
class JudgeResult:
    text: str | None
    verdict: int | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0


class JudgeCache:
    """Append-only JSONL cache keyed by sha256(model, prompt); safe for one writer process."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self._data[rec["key"]] = rec["reply"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a torn last line after a kill: ignore it

    @staticmethod
    def key(model: str, prompt: str) -> str:
        return hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()

    def get(self, model: str, prompt: str) -> str | None:
        return self._data.get(self.key(model, prompt))

    def put(self, model: str, prompt: str, reply: str) -> None:
        k = self.key(model, prompt)
        with self._lock:
            self._data[k] = reply
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": k, "reply": reply}) + "\n")


def resolve_api_key(env_name: str, key_file: str) -> str:
    key = os.environ.get(env_name, "") if env_name else ""
    if not key and key_file:
        p = Path(key_file)
        if not p.is_file():
            raise FileNotFoundError(f"judge API key file not found: {key_file}")
        key = p.read_text(encoding="utf-8").strip()
    return key or "EMPTY"  # local OpenAI-compatible servers (vLLM) accept any key


class OpenAIJudge:
    """Judge through an OpenAI-compatible chat endpoint."""

    RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        cache: JudgeCache,
        concurrency: int = 16,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_tokens: int = 1024,
    ):
        if not base_url:
            raise ValueError("eval.judge=openai needs eval.judge_base_url")
        self.base_url, self.model, self._key, self.cache = base_url, model, api_key, cache
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.max_tokens = max_tokens
        self.stats = {"requests": 0, "retries": 0, "failures": 0, "cached": 0}

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIJudge(base_url={self.base_url!r}, model={self.model!r})"

    async def _ask(self, client: Any, sem: asyncio.Semaphore, prompt: str) -> JudgeResult:
        import openai

        cached = self.cache.get(self.model, prompt)
        if cached is not None:
            self.stats["cached"] += 1
            return JudgeResult(cached, parse_judgment(cached), cached=True)
        error = None
        for attempt in range(1, self.retries + 2):
            async with sem:
                self.stats["requests"] += 1
                try:
                    resp = await client.chat.completions.create(
                        model=self.model,
                        messages=[{"role": "user", "content": prompt}],
                        temperature=0.0,
                        top_p=1.0,
                        max_tokens=self.max_tokens,
                        timeout=self.timeout,
                    )
                    text = resp.choices[0].message.content or ""
                    self.cache.put(self.model, prompt, text)
                    return JudgeResult(text, parse_judgment(text), attempts=attempt)
                except openai.APIStatusError as exc:
                    error = f"HTTP {exc.status_code}"
                    if exc.status_code not in self.RETRY_STATUS:
                        break
                except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                    error = type(exc).__name__
                except Exception as exc:  # a garbage body the client cannot parse
                    error = f"bad response: {type(exc).__name__}"
            if attempt <= self.retries:
                self.stats["retries"] += 1
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
        self.stats["failures"] += 1
        return JudgeResult(None, None, error=error, attempts=attempt)

    async def _run(self, prompts: Sequence[str]) -> list[JudgeResult]:
        import openai

        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key, max_retries=0, timeout=self.timeout)
        sem = asyncio.Semaphore(self.concurrency)
        try:
            return list(await asyncio.gather(*(self._ask(client, sem, p) for p in prompts)))
        finally:
            await client.close()

    def judge(self, prompts: Sequence[str]) -> list[JudgeResult]:
        return asyncio.run(self._run(prompts)) if prompts else []


class SelfJudge:
    """The evaluated model judges (greedy), so evaluation works with no network at all."""

    def __init__(self, generate: Callable[[list[str]], list[str]], cache: JudgeCache, model: str = "self"):
        self.generate, self.cache, self.model = generate, cache, model
        self.stats = {"requests": 0, "retries": 0, "failures": 0, "cached": 0}

    def judge(self, prompts: Sequence[str]) -> list[JudgeResult]:
        out: list[JudgeResult | None] = [None] * len(prompts)
        todo = []
        for i, p in enumerate(prompts):
            hit = self.cache.get(self.model, p)
            if hit is not None:
                self.stats["cached"] += 1
                out[i] = JudgeResult(hit, parse_judgment(hit), cached=True)
            else:
                todo.append(i)
        if todo:
            self.stats["requests"] += len(todo)
            replies = self.generate([prompts[i] for i in todo])
            for i, text in zip(todo, replies, strict=True):
                self.cache.put(self.model, prompts[i], text)
                out[i] = JudgeResult(text, parse_judgment(text), attempts=1)
        return [r for r in out if r is not None]
