"""The `guards` section: reward-hacking guards and the verifier collapse guard (not in the paper).

Every switch defaults off, so the paper presets keep the paper's behaviour; `configs/default.yaml`
turns them on for the small embedded model, which games its rewards without them.
"""

from __future__ import annotations

from pydantic import model_validator

from spell.config.base import _field, _Section
from spell.vocab import GUARDS


class GuardsConfig(_Section):
    template_answer: bool = _field(
        False, "Reject a proposal whose answer, question or an option is the questioner template's JSON example."
    )
    not_a_question: bool = _field(
        False,
        "Reject a 'question' with neither a '?' nor a question word, or one that copies a sentence of the "
        "documents (6+ words verbatim).",
    )
    answer_not_in_docs: bool = _field(
        False, "Reject a general-QA reference answer whose normalised text occurs in none of the shown documents."
    )
    template_number: bool = _field(
        False, "Reject a DocMath answer that occurs in the questioner template but in none of the documents."
    )
    mc_options: bool = _field(False, "Reject MC options that lack the answer letter's option or repeat an option.")
    answer_in_question: bool = _field(
        False, "Reject a question whose text contains its own answer (the MC correct option, the DocMath number)."
    )
    placeholder_answer: bool = _field(
        False,
        "Record a responder answer that is the template's placeholder ('insert answer here') as rejected; it "
        "scores 0 and is not sent to the verifier.",
    )
    repeated_question: bool = _field(
        False,
        "Reject a proposal that re-asks a question of the history memory it was shown (the same words, or "
        "the same answer with 80% of the words): the memory asks for a new, harder question (paper §3.2).",
    )
    looked_up_answer: bool = _field(
        False,
        "Reject a DocMath answer that is a number the shown documents state: a look-up, not the calculation "
        "the task asks for (paper §3.1, 'numerical reasoning').",
    )
    one_char_reference: bool = _field(
        False,
        "Reject a general-QA reference of one character after normalisation: cover exact match is a "
        "substring test, so '1' is inside '1914' and nearly every answer scores it.",
    )
    multiple_candidates: bool = _field(
        False,
        "Record a responder answer that hedges between candidates ('X or Y', 'X; Y', 'X / Y') or lists three "
        "or more short items as rejected: substring matching credits any list holding the reference, and "
        "max(rule, verdict) cannot veto it.",
    )
    strict_docmath: bool = _field(
        False,
        "Training-time DocMath rule without the official rule's forgiveness of scale slips (1000 for "
        "1,000,000, x100 for a percent) and sign slips (-3 for 3): such an answer scores 0 in training and "
        "counts as decisively wrong in the collapse calibration. Evaluation keeps the official rule.",
    )
    rejected_reward: float = _field(
        -1.0, "Questioner reward of a proposal a guard rejects (the paper's unparsable penalty, Eq. 7)."
    )
    verifier_collapse: bool = _field(
        False,
        "Verifier collapse guard: when the verifier majority says YES to too many answers that a decisive rule "
        "check marks wrong (a wrong MC letter, DocMath number, or general-QA number or year) in a round, that round's "
        "responder reward "
        "falls back to the rule check, and verifier groups train only where the majority equals a decisive rule.",
    )
    collapse_false_yes: float = _field(
        0.5, "Collapse when YES majorities exceed this share of the decisive rule-wrong answers.", ge=0, le=1
    )
    collapse_min_decisive: int = _field(
        3, "Decisive rule-wrong answers the window needs before the collapse guard judges it.", ge=1
    )
    collapse_window: int = _field(
        1,
        "Rounds the collapse guard pools its evidence over, this one and the main line's latest earlier ones "
        "(from the stored calibration rows, so a resumed or replayed run pools the same); 1 judges each round "
        "alone. A small model's round rarely holds enough decisive answers to judge.",
        ge=1,
    )

    @model_validator(mode="after")
    def _check_reward(self) -> GuardsConfig:
        if self.rejected_reward > 0:
            raise ValueError(f"guards.rejected_reward must be <= 0 (a penalty), got {self.rejected_reward}")
        return self

    def enabled(self) -> frozenset[str]:
        """Names of the sample guards that are on."""
        return frozenset(name for name in GUARDS if getattr(self, name))
