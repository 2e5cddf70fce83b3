"""Evaluation on six long-context QA benchmarks (paper §4.2, App. E.4): loaders, prompts with middle
truncation, n samples per question, rule scores, an LLM judge, pass@k and the paper's Avg."""
