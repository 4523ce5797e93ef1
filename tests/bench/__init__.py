"""`make bench`: load over the real REST path with wrk, a gRPC-direct baseline, SQL statements per
request and a scale sweep, checked against the budgets in docs/benchmarks.md.

Not a test suite: nothing here is named test_*, so pytest never collects it.
"""
