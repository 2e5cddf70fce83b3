"""Config sections of what a run reports: MLflow tracking and the benchmark evaluation (paper §4.2, App. E.4)."""

from __future__ import annotations

from typing import Literal

from spell.config.base import _field, _Section


class TrackingConfig(_Section):
    mlflow: bool = _field(True, "Log the run to MLflow (one MLflow run per spell run).")
    mlflow_uri: str = _field("", "MLflow tracking URI; empty = sqlite:///<runs_dir>/mlflow.db (no server needed).")


class EvalConfig(_Section):
    data_dir: str = _field("data/eval", "Folder holding the benchmark files (see spell/eval/benchmarks.py).")
    benchmarks: list[str] = _field(
        ["docmath", "frames", "hotpotqa", "2wikimqa", "musique", "longbench-v2"],
        "Benchmarks to run (paper §4.2: DocMath, Frames, LongBench QA, LongBench-v2).",
    )
    limit: int = _field(0, "Questions per benchmark (0 = all).", ge=0)
    n_samples: int = _field(8, "Samples per question, distinct seeds (paper App. E.4: 8).", ge=1)
    temperature: float = _field(0.7, "Sampling temperature for evaluation (App. E.4).", ge=0)
    top_p: float = _field(0.95, "Nucleus sampling for evaluation (App. E.4).", gt=0, le=1)
    max_input_tokens: int = _field(16384, "Middle truncation keeps the first and last halves (LongBench).", ge=2)
    max_new_tokens: int = _field(4096, "Longest answer (4K for instruct models, 20K for reasoning models).", ge=1)
    judge: Literal["none", "openai", "self"] = _field(
        "none", "LLM judge: an OpenAI-compatible endpoint, the evaluated model itself, or none (rule only)."
    )
    judge_base_url: str = _field("", "Base URL of the OpenAI-compatible judge (e.g. a vLLM server).")
    judge_model: str = _field("gpt-oss-120b", "Judge model name (the paper used gpt-oss-120b).")
    judge_api_key_env: str = _field("SPELL_JUDGE_API_KEY", "Environment variable holding the judge API key.")
    judge_api_key_file: str = _field("", "File holding the judge API key (used when the variable is unset).")
    judge_concurrency: int = _field(16, "Judge requests in flight at once.", ge=1)
    judge_timeout: float = _field(60.0, "Seconds per judge request.", gt=0)
    judge_retries: int = _field(4, "Retries of a failed judge request (backoff doubles each time).", ge=0)
    judge_all: bool = _field(False, "Also judge samples the rule already scores correct (official: off).")
    scorer: Literal["released", "spell"] = _field(
        "released",
        "How LongBench-v2 letters and DocMath answers are read and matched. 'released': case for case as the "
        "released SPELL evaluation (long.py, docmath.py; spec Part B §6.4), so scores compare with the paper's "
        "tables. 'spell': the training rule checks (spell.rules), which tolerate a colon, extra spaces or a "
        "line break before the letter and read '12,5' as 125 (not in the paper).",
    )
    pass_k: list[int] = _field([1, 2, 4, 8], "k values of pass@k (paper Eq. 11; see pass_k_estimator).")
    pass_k_estimator: Literal["unbiased", "bootstrap"] = _field(
        "unbiased",
        "'unbiased': the paper's pass@k, 1 - C(n-c, k)/C(n, k) over the samples scoring >= 0.5 (Eq. 11). "
        "'bootstrap': the released evaluation's best@k, the mean max of k scores drawn with replacement (spec "
        "Part B §6.6; computed as its exact expectation), lower than the paper's estimator, to compare with "
        "numbers from that code.",
    )
    first_answer_only: bool = _field(
        False,
        "LongBench QA (HotpotQA, 2Wiki, MuSiQue) scored against its first listed answer only, as the released "
        "evaluation's answers[0] (spec Part B §6.2); off: the max over every listed answer (spec Part A).",
    )
