"""A scripted rollout backend for the `cpu-smoke` preset and pipeline tests.

A tiny random model writes no parseable question, so a pipeline test driven by one would never reach
the responder, the verifier or a non-zero advantage. This backend plays the three roles with simple,
seeded rules over the actual prompt text, so every stage, reward case and selection rule is exercised;
the learner still trains the real (tiny) model on the scripted tokens. It is a test double: the
embedded default and GPU presets generate with the model itself.

- questioner: picks a word from the shown documents and asks which word follows it (a JSON block);
  sometimes writes broken JSON, sometimes an unclosed `<think>`;
- responder: finds the word in its documents and answers it, right with probability `skill`,
  otherwise a random document word; with no documents (grounding check) it answers 'unknown';
- verifier: compares Answer 1 and Answer 2 after normalisation, with a little noise.

Fault injection (SPELL_FAULT_GARBAGE, SPELL_FAULT_HACK) is read through `spell.faults`, which lists them.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from spell import faults
from spell.engine.rollout.interface import FINISH_STOP, Completion, Prompt, SamplingParams, render_prompt
from spell.text import normalize_answer

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}|\d+(?:\.\d+)?")
_F = "```"
GARBAGE = (
    "",
    "\ufffd\ufffd\ufffd" + _F + 'json\n{"question": "\ufffd?", "answer": "\ufffd"}\n' + _F,
    _F + 'json\n{"question": "What </think> is it?", "answer": "</think>"}\n' + _F,
    _F + "json\n" + _F + 'json\n{"question": "Q?", "answer": "A"}\n' + _F + "\n" + _F,
    "<think>" + "and then " * 2000,
    "Decision: [[YES]] [[NO]] " * 50,
    "[" * 5000,
)


class ScriptedGenerator:
    reads_text = True  # given the prompt text where it has it, not only token ids

    def __init__(self, tokenizer: Any, skill: float = 0.55, bad_format_rate: float = 0.1, garbage_rate: float = -1):
        self.tokenizer, self.skill, self.bad_format_rate = tokenizer, skill, bad_format_rate
        self.garbage_rate = faults.garbage_rate() if garbage_rate < 0 else garbage_rate
        self.hacks = faults.planted_hacks()
        eos = tokenizer.eos_token_id
        self.eos = [eos] if eos is not None else []

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        out = []
        for pi, p in enumerate(prompts):
            if isinstance(p, str):
                text = p
            elif p and isinstance(p[0], dict):
                text = p[-1]["content"]
            else:
                text = self.tokenizer.decode(p, skip_special_tokens=True)
            ids = render_prompt(self.tokenizer, p)
            row = []
            for si in range(params.n):
                digest = hashlib.sha256(f"{params.seed}:{pi}:{si}:{text}".encode()).digest()
                rng = random.Random(int.from_bytes(digest[:8], "little"))
                reply = self._reply(text, rng)
                if self.garbage_rate and rng.random() < self.garbage_rate:
                    reply = rng.choice(GARBAGE)
                tokens = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"])[: params.max_new_tokens - 1]
                row.append(Completion(pi, si, reply, tokens + self.eos, FINISH_STOP, len(ids)))
            out.append(row)
        return out

    def _reply(self, prompt: str, rng: random.Random) -> str:
        if "propose ONE challenging question" in prompt:
            return self._question(prompt, rng)
        if "Answer 1:" in prompt and "Answer 2:" in prompt:
            return self._verdict(prompt, rng)
        return self._answer(prompt, rng)

    @staticmethod
    def _docs(prompt: str) -> str:
        m = re.search(r"<text>\n(.*?)\n</text>", prompt, re.DOTALL)
        return m.group(1) if m else ""

    def _question(self, prompt: str, rng: random.Random) -> str:
        roll = rng.random()
        if roll < self.bad_format_rate:
            return 'I think the question is ```json\n{"question": "unfinished",\n```'
        if roll < self.bad_format_rate * 1.3:
            return "<think>Let me read every document carefully before"
        words = _WORD.findall(self._docs(prompt))
        pairs = [(a, b) for a, b in pairwise(words) if len(a) > 3]
        if "numeric reasoning" in prompt:
            pairs = [(a, b) for a, b in pairs if re.fullmatch(r"\d+(?:\.\d+)?", b) and float(b) != 0] or pairs
        if not pairs:
            return "There is nothing to ask."
        if "copy_template" in self.hacks and rng.random() < 0.5:
            return self._copied(prompt, words)
        a, b = rng.choice(pairs)
        question = f"In the documents, which word comes right after '{a}'?"
        obj: dict[str, Any] = {"question": question, "answer": b}
        if "multiple-choice" in prompt:
            target = re.search(r"must be option ([A-D])", prompt)
            letter = target.group(1) if target else "A"
            others = [w for w in dict.fromkeys(words) if w != b][:3] or ["none", "all", "some"]
            while len(others) < 3:
                others.append(f"option{len(others)}")
            options = dict(zip([x for x in "ABCD" if x != letter], others, strict=False))
            options[letter] = b
            obj = {"question": question, "options": dict(sorted(options.items())), "answer": letter}
        return f"The documents mention '{a}' once.\n```json\n{json.dumps(obj)}\n```"

    @staticmethod
    def _copied(prompt: str, words: list[str]) -> str:
        """A hacked proposal: a document sentence as the 'question', the template's example as the answer."""
        sentence = " ".join(words[:10]) + "."
        if "multiple-choice" in prompt:
            obj: dict[str, Any] = {"question": sentence, "options": dict.fromkeys("ABCD", "same"), "answer": "A"}
        elif "numeric reasoning" in prompt:
            obj = {"question": sentence, "answer": 12.5}
        else:
            obj = {"question": sentence, "answer": "<the short, exact answer>"}
        return f"```json\n{json.dumps(obj)}\n```"

    def _answer(self, prompt: str, rng: random.Random) -> str:
        docs = self._docs(prompt)
        m = re.search(r"comes right after '([^']+)'", prompt)
        words = _WORD.findall(docs)
        if docs.strip() == "Empty" or not words or m is None:
            return "The documents are missing, so the correct answer is unknown."
        follow = [b for a, b in pairwise(words) if a == m.group(1)]
        guess = follow[0] if follow and rng.random() < self.skill else rng.choice(words)
        choices = dict(re.findall(r"^\(([A-D])\) (.*)$", prompt, re.MULTILINE))
        if choices:
            letter = next((k for k, v in choices.items() if v == guess), rng.choice("ABCD"))
            return f"After reading the text, the correct answer is ({letter})."
        if "numeric reasoning" in prompt:
            return f"Reading the table step by step. Therefore, the answer is {guess}."
        return f"The text says so. The correct answer is {guess}."

    def _verdict(self, prompt: str, rng: random.Random) -> str:
        if "yes_verifier" in self.hacks:
            return "Explanation: they look alike.\nDecision: [[YES]]"
        a1 = re.search(r"Answer 1: (.*)", prompt)
        a2 = re.search(r"Answer 2: (.*)", prompt)
        same = a1 is not None and a2 is not None and normalize_answer(a1.group(1)) == normalize_answer(a2.group(1))
        roll = rng.random()
        if roll < 0.05:
            return "Explanation: hard to say."
        if roll < 0.2:
            same = not same
        return f"Explanation: compared the two answers.\nDecision: {'[[YES]]' if same else '[[NO]]'}"
