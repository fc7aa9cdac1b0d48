"""The benchmark suite: `python -m tests.bench [B1 …] [--quick]` (see __main__.py).

Not part of the pytest run: no module here is named test_*.py.
"""
