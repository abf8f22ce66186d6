"""Benchmarks of the accept path, one onboarding's latency and a burst of deals (python -m bench)."""
