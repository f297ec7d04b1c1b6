"""Benchmarks: the RuleQA builder (and, later, the runner)."""
