"""A planted judge API key reaches the judge and nothing else: no artifact, log, MLflow store, Ray log,
Prefect database or error message of a training run and of an evaluation holds it, even when the judge
server echoes it back in its errors."""

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq
import pytest

from tests.procs import run_spell, short_tmp
from tests.test_eval_e2e import write_fixtures
from tests.test_eval_judge import FakeJudge

pytestmark = [pytest.mark.slow, pytest.mark.ray]
ROOT = Path(__file__).resolve().parents[1]
ENV_KEY = "sk-planted-ENVKEY-7f3a9c1e5b2d4680"
FILE_KEY = "sk-planted-FILEKEY-0c4e8a2f6b1d3957"


class EchoingJudge(FakeJudge):
    """A careless judge server: its error bodies repeat the Authorization header it got."""

    seen: ClassVar[list[str]] = []

    def do_POST(self):
        auth = self.headers.get("Authorization", "")
        EchoingJudge.seen.append(auth)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(EchoingJudge.seen)
        if n % 3 == 0:
            return self._send(500, {"error": {"message": f"internal error for {auth}"}})
        if n % 3 == 1:
            return self._send(401, {"error": {"message": f"invalid key: {auth}"}})
        reply = "Explanation: fine.\nDecision: [[YES]]"
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": reply}}]})  # fmt: skip


@contextlib.contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A fake OpenAI-compatible server on 127.0.0.1; yields its base URL."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()


def _leaks(root: Path, secrets: tuple[str, ...]) -> list[str]:
    """Files under `root` holding a secret: raw bytes for every file, decoded cells for Parquet (compressed)."""
    found = []
    for f in root.rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        data = f.read_bytes()
        texts = [data]
        if f.suffix == ".parquet":
            texts.append(json.dumps(pq.read_table(f).to_pylist(), default=str).encode())
        found += [f"{f}: {s}" for s in secrets for t in texts if s.encode() in t]
    return found


def test_planted_api_key_appears_in_no_output(prefect_api, tiny_model_dir, tmp_path):
    runs, logs = tmp_path / "runs", tmp_path / "logs"
    logs.mkdir()
    write_fixtures(tmp_path / "data")
    key_file = tmp_path / "judge.key"
    key_file.write_text(FILE_KEY + "\n")
    ray_tmps = [short_tmp() for _ in range(2)]
    env = {**os.environ, "SPELL_JUDGE_API_KEY": ENV_KEY}
    with serve(EchoingJudge) as url:
        common = [f"run.runs_dir={runs}", "eval.judge=openai", f"eval.judge_base_url={url}", "eval.judge_retries=1"]
        rc = run_spell(
            ["run", "--config", "configs/cpu-smoke.yaml", "--run", "train", "--iterations", "1",
             *[a for s in common for a in ("--set", s)]],
            logs / "run.log", ray_tmps[0], env,
        )  # fmt: skip
        assert rc == 0, (logs / "run.log").read_text()[-3000:]
        evals = [
            (["--set", "eval.judge_api_key_env=SPELL_JUDGE_API_KEY"], env, "eval-env"),
            (
                ["--set", "eval.judge_api_key_env=", "--set", f"eval.judge_api_key_file={key_file}"],
                {k: v for k, v in env.items() if k != "SPELL_JUDGE_API_KEY"},
                "eval-file",
            ),
        ]
        for extra, e, name in evals:
            args = ["eval", "--model", tiny_model_dir, "--name", name, "--tasks", "hotpotqa", "musique"]
            args += [a for s in [*common, f"eval.data_dir={tmp_path / 'data'}", "eval.n_samples=2",
                                 "eval.max_new_tokens=8", "eval.max_input_tokens=256", "rollout.prefill=true",
                                 "eval.judge_all=true"] for a in ("--set", s)]  # fmt: skip
            rc = run_spell(args + extra, logs / f"{name}.log", ray_tmps[1], e)
            assert rc == 0, (logs / f"{name}.log").read_text()[-3000:]
    # the keys did reach the judge (else this test proves nothing) ...
    assert f"Bearer {ENV_KEY}" in EchoingJudge.seen and f"Bearer {FILE_KEY}" in EchoingJudge.seen
    errors = [
        r["judge_error"]
        for f in runs.glob("*/eval/eval_samples_*.parquet")
        for r in pq.read_table(f).to_pylist()
        if r["judge_error"]
    ]
    assert errors, "the echoing server's errors were not recorded"
    # ... and nowhere else
    secrets = (ENV_KEY, FILE_KEY)
    places = [runs, logs, *ray_tmps]
    if os.environ.get("PREFECT_HOME"):
        places.append(Path(os.environ["PREFECT_HOME"]))  # the Prefect server's database and logs
    leaks = [leak for p in places for leak in _leaks(p, secrets)]
    assert not leaks, leaks
