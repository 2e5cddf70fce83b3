"""The layout's rules, checked on the source (issue 24): no import circle, no arrow from a lower layer up,
no file over 400 lines, task-type names spelled only in the vocabulary and the task-type modules, each
stage a Prefect task beside a pure function of the same name, the replica protocol implemented, and a new
task type that is one file plus a config weight."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("spell", "flows", "tasks", "storage")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module of ours this file imports, at the top or inside a function (`from a import b` is the
    module a.b when that is one, else a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


GRAPH = {m: _imports(p) - {m} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# layer -> the module prefixes it may not import (a lower layer never imports a higher one)
ALGORITHM = (
    "spell.vocab",
    "spell.errors",
    "spell.files",
    "spell.text",
    "spell.task_types",
    "spell.rules",
    "spell.roles",
    "spell.rewards",
    "spell.advantages",
    "spell.loss",
    "spell.history",
    "spell.sampling",
    "spell.batch",
    "spell.guards",
    "spell.calibration",
    "spell.faults",
)
ABOVE_ALGORITHM = ("spell.config", "spell.data", "spell.stages", "spell.engine", "spell.eval", "spell.cli",
                   "spell.commands", "spell.memory_plan", "tasks", "flows", "storage")  # fmt: skip
FORBIDDEN = {
    ALGORITHM: ABOVE_ALGORITHM,
    ("spell.config",): ("spell.data", "spell.stages", "spell.engine", "spell.eval", "tasks", "flows", "storage"),
    ("spell.data", "spell.stages"): ("spell.engine", "spell.eval", "tasks", "flows", "storage"),
    ("spell.engine",): ("spell.config", "spell.stages", "spell.data", "tasks", "flows", "storage"),
    ("spell.vocab",): ("spell",),
    ("storage",): ("tasks", "flows"),
    ("tasks",): ("flows",),
}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_arrow_from_a_lower_layer_up():
    bad = []
    for layer, banned in FORBIDDEN.items():
        for m, deps in GRAPH.items():
            if _under(m, layer):
                bad += [f"{m} -> {d}" for d in sorted(deps) if _under(d, banned) and not _under(d, layer)]
    assert bad == []


def test_no_file_over_400_lines():
    files = [p for pkg in (*PACKAGES, "tests", "bench") for p in (ROOT / pkg).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_task_type_names_are_spelled_in_two_places_only():
    from spell.vocab import TASKS

    allowed = {"spell.vocab"} | {m for m in MODULES if _under(m, ("spell.task_types",))}
    hits = []
    for m, p in MODULES.items():
        if m in allowed:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hits += [f"{m}: {t!r}" for t in TASKS if t in node.value]
    assert hits == []


STAGES = ("sample_docs", "question", "respond", "verify", "reward", "select_batch")


@pytest.mark.parametrize("stage", [*STAGES, "grpo_step", "checkpoint"])
def test_a_stage_task_is_one_prefect_task_beside_its_pure_function(stage):
    tree = ast.parse((ROOT / "tasks" / f"{stage}.py").read_text())
    decorated = [
        f.name
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        and any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "task" for d in f.decorator_list)
    ]
    assert decorated == [stage]
    if stage in STAGES:  # grpo_step and checkpoint are the actor's: no pure part
        assert f"spell.stages.{stage}" in GRAPH[f"tasks.{stage}"]


def test_both_replica_kinds_implement_the_replica_protocol():
    from spell.engine.policy import Policy
    from spell.engine.rollout.interface import RolloutReplica
    from spell.engine.rollout.vllm_replica import VLLMReplica

    wanted = {n: inspect.signature(f) for n, f in vars(RolloutReplica).items() if inspect.isfunction(f) and n[0] != "_"}
    assert len(wanted) == 9
    for cls in (Policy, VLLMReplica):
        for name, sig in wanted.items():
            # ray.remote(cls), once run in this process, adds its own tracing parameter to the class's methods
            params = [p for p in inspect.signature(getattr(cls, name)).parameters if p != "_ray_trace_ctx"]
            assert params == list(sig.parameters), (cls, name)


NEW_TASK_TYPE = """
from spell.rules import cover_exact_match, extract_qa_answer
from spell.task_types.base import ProposedAnswer, TaskType


class Yes(TaskType):
    name = "doc_yes_no"
    questioner_intro = "You write yes/no questions."
    principles = "## Design Principles\\n- The answer is yes or no."
    output_format = '```json\\n{"question": "<q>", "answer": "yes"}\\n```'
    responder_template = "<text>\\n{context}\\n</text>\\nQuestion: {question}"

    def read_answer(self, obj, count_tokens, max_tokens):
        a = str(obj.get("answer", "")).lower()
        return ProposedAnswer("ok", answer=a) if a in ("yes", "no") else ProposedAnswer("bad_format", "not yes/no")

    def extract(self, text):
        return extract_qa_answer(text)

    def rule_score(self, prediction, reference):
        return cover_exact_match(prediction, reference)


TASK_TYPE = Yes()
"""


def test_a_new_task_type_is_one_file_plus_a_config_weight(tmp_path, monkeypatch):
    from spell import task_types
    from spell.config import load_config
    from spell.roles import questioner, responder

    (tmp_path / "yes_no.py").write_text(textwrap.dedent(NEW_TASK_TYPE))
    monkeypatch.setattr(task_types, "__path__", [*task_types.__path__, str(tmp_path)])
    task_types.registry.cache_clear()
    try:
        assert task_types.names()[-1] == "doc_yes_no"
        cfg = load_config(overrides=["data.task_weights.doc_yes_no=1.0"])
        assert cfg.data.task_weights["doc_yes_no"] == 1.0
        assert "You write yes/no questions." in questioner.build_prompt("doc_yes_no", ["A doc."])
        parsed = questioner.parse("doc_yes_no", '```json\n{"question": "Is it?", "answer": "Yes"}\n```')
        assert parsed.ok and parsed.answer == "yes" and parsed.responder_question() == "Is it?"
        assert "Question: Is it?" in responder.build_prompt("doc_yes_no", "Is it?", ["A doc."])
        assert task_types.rule_score("doc_yes_no", responder.parse("doc_yes_no", "The answer is yes."), "yes") == 1.0
    finally:
        monkeypatch.undo()
        task_types.registry.cache_clear()
    with pytest.raises(Exception, match="unknown task"):
        load_config(overrides=["data.task_weights.doc_yes_no=1.0"])
