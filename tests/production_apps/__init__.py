"""Apps, tasks and scripts that tests/test_production.py runs under real servers.

They live in modules, not in the tests, because offload's worker processes import task
functions by module name: the servers run with ``tests/`` on ``PYTHONPATH``.
"""
