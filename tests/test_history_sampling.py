"""Part A rows 'questioner context', 'history admission', 'history dedup', 'tasks' (sampler)."""

import random
from collections import Counter

import pytest

from spell.history import HistoryEntry, HistoryMemory
from spell.sampling import TaskSampler, task_counts


def _visit(mem, rng, n_docs=30, m=5, task="doc_general_qa", cluster="c1", mean=0.5, q=None, it=0):
    ctx = mem.context(task, cluster, n_docs, m, rng)
    entry = HistoryEntry(q or f"question {len(mem)} {rng.random()}", "ans", mem.entry_docs(ctx), it)
    mem.admit(task, cluster, entry, mean)
    return ctx


def test_first_visit_shows_m_docs_in_order():
    ctx = HistoryMemory().context("doc_mc", "c", 20, 5, random.Random(0))
    assert len(ctx.doc_indices) == 5 and list(ctx.doc_indices) == sorted(ctx.doc_indices)
    assert ctx.examples == ()
    small = HistoryMemory().context("doc_mc", "c", 3, 5, random.Random(0))
    assert small.doc_indices == (0, 1, 2)


def test_paper_context_is_bounded_by_L_times_m_plus_m():
    """Part A 'questioner context' (paper): at most L*m + m docs, new docs never behind an entry."""
    mem, rng = HistoryMemory(size=3), random.Random(1)
    sizes = []
    for _ in range(8):
        ctx = _visit(mem, rng, n_docs=100)
        behind = {i for e in ctx.examples for i in e.doc_indices}
        assert not behind & set(ctx.new_doc_indices)
        sizes.append(len(ctx.doc_indices))
    assert sizes[:4] == [5, 10, 15, 20] and max(sizes) == 20
    assert len(mem.entries("doc_general_qa", "c1")) == 3  # FIFO, L = 3


def test_cumulative_context_grows_until_cluster_used_up():
    """Part A 'questioner context' option `cumulative` (official code)."""
    mem, rng = HistoryMemory(size=3, context="cumulative"), random.Random(2)
    sizes = [len(_visit(mem, rng, n_docs=27).doc_indices) for _ in range(8)]
    assert sizes == [5, 10, 15, 20, 25, 27, 27, 27]


def test_admission_rules_and_fifo():
    """Part A 'history admission': only 0 < mean < 1 under the paper rule."""
    mem, rng = HistoryMemory(size=2), random.Random(3)
    _visit(mem, rng, mean=1.0, q="too easy")
    _visit(mem, rng, mean=0.0, q="too hard")
    assert len(mem) == 0
    for q in ("q1", "q2", "q3"):
        _visit(mem, rng, q=q)
    assert [e.question for e in mem.entries("doc_general_qa", "c1")] == ["q2", "q3"]
    official = HistoryMemory(admit="any_correct")
    _visit(official, rng, mean=1.0, q="easy")
    assert len(official) == 1


def test_dedup_of_normalised_question():
    """Part A 'history dedup'."""
    mem = HistoryMemory()
    e = HistoryEntry("What is the capital?", "x", (1,))
    assert mem.add("t", "c", e)
    assert not mem.add("t", "c", HistoryEntry("what is THE capital", "y", (2,)))
    assert HistoryMemory(dedup=False).add("t", "c", e)
    assert mem.add("t", "other", e)  # per cluster


def test_rows_round_trip_and_replay():
    mem, rng = HistoryMemory(), random.Random(4)
    events = []
    for i in range(6):
        cluster = f"c{i % 2}"
        ctx = mem.context("doc_mc", cluster, 30, 5, rng)
        row = {
            "task": "doc_mc",
            "cluster_id": cluster,
            "question": f"q{i}",
            "answer": "A",
            "doc_indices": list(mem.entry_docs(ctx)),
            "iteration": i,
            "mean_reward": [0.5, 1.0][i % 3 == 2],
        }
        events.append(row)
        mem.admit("doc_mc", cluster, HistoryEntry(f"q{i}", "A", tuple(row["doc_indices"]), i), row["mean_reward"])
    rebuilt = HistoryMemory.from_rows(mem.to_rows())
    replayed = HistoryMemory.replay(events)
    for other in (rebuilt, replayed):
        assert other.to_rows() == mem.to_rows()
        for c in ("c0", "c1"):
            assert other.context("doc_mc", c, 30, 5, random.Random(9)) == mem.context(
                "doc_mc", c, 30, 5, random.Random(9)
            )


def test_task_counts_split():
    assert task_counts(480, {"a": 1, "b": 1, "c": 1}) == {"a": 160, "b": 160, "c": 160}
    assert task_counts(4, {"a": 1, "b": 1, "c": 1}) == {"a": 2, "b": 1, "c": 1}
    assert task_counts(10, {"a": 3, "b": 1, "c": 0}) == {"a": 8, "b": 2, "c": 0}
    with pytest.raises(ValueError):
        task_counts(3, {"a": 0})


def test_sampler_stratified_without_replacement_and_refilled():
    """Part A 'tasks': equal weights, without replacement within a pass, refilled when exhausted."""
    rows = {
        "doc_general_qa": [f"g{i}" for i in range(7)],
        "doc_mc": [f"m{i}" for i in range(5)],
        "docmath_qa": [f"d{i}" for i in range(3)],
    }
    s = TaskSampler(rows, {t: 1.0 for t in rows}, seed=11)
    first = s.draw(9)
    assert Counter(t for t, _ in first) == {"doc_general_qa": 3, "doc_mc": 3, "docmath_qa": 3}
    math_ids = [rid for t, rid in first if t == "docmath_qa"]
    assert sorted(math_ids) == ["d0", "d1", "d2"]  # one full pass, no repeats
    more = [rid for _ in range(4) for t, rid in s.draw(3) if t == "doc_mc"]
    assert len(more) == 4
    all_mc = [rid for t, rid in first if t == "doc_mc"] + more
    assert sorted(all_mc[:5]) == sorted(rows["doc_mc"])  # the first pass covers every row once


def test_sampler_state_resumes_identically():
    rows = {
        "doc_general_qa": [f"g{i}" for i in range(7)],
        "doc_mc": [f"m{i}" for i in range(5)],
        "docmath_qa": [f"d{i}" for i in range(3)],
    }
    w = {t: 1.0 for t in rows}
    a = TaskSampler(rows, w, seed=5)
    a.draw(12)
    b = TaskSampler(rows, w, seed=5, drawn=a.state())
    assert a.draw(12) == b.draw(12)
    assert TaskSampler(rows, w, seed=6).draw(12) != TaskSampler(rows, w, seed=5).draw(12)


def test_sampler_rejects_weighted_task_without_rows():
    with pytest.raises(ValueError, match="no corpus rows"):
        TaskSampler({"doc_mc": []}, {"doc_mc": 1.0})


def test_batch_is_task_balanced_when_a_round_yields_more_than_enough_groups():
    """Part A 'tasks': prompts are shuffled before ids are assigned, so the first `train_batch_size` usable groups
    (kept in id order) hold each task in proportion to its weight. 480 prompts, every task 40% usable: 192 usable
    groups for 128 places. Each task's count is then hypergeometric around 128/3 (std ~4.4): the test allows
    +-16 (3.6 std); without the shuffle the last task got 0."""
    from spell.batch import ResponderGroup, usable_groups
    from spell.config import SpellConfig
    from spell.data.corpus import Cluster, Corpus
    from spell.stages.sample_docs import sample_prompts
    from spell.vocab import TASKS

    cfg = SpellConfig()
    clusters = {f"{t}-{i}": Cluster(f"{t}-{i}", t, ("a doc", "b doc")) for t in TASKS for i in range(200)}
    corpus = Corpus(clusters)
    sampler = TaskSampler(corpus.by_task(), cfg.data.task_weights, seed=0)
    rows = sample_prompts(corpus, sampler, HistoryMemory(), cfg, "r", 1, 1)
    usable = random.Random(7)
    groups = [
        ResponderGroup(r["prompt_id"], r["task"], ("a", "b"), (1.0, 0.0) if usable.random() < 0.4 else (0.0, 0.0))
        for r in rows
    ]
    groups.sort(key=lambda g: g.question_id)  # collection order, as batch_rows keeps it
    kept = usable_groups(groups)[: cfg.sampling.train_batch_size]
    counts = Counter(g.task for g in kept)
    assert len(kept) == 128
    for t in TASKS:
        assert abs(counts[t] - 128 / 3) <= 16, counts
