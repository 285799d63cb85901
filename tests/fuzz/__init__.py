"""Fuzzing of the packet handler: ``gen`` makes hostile inputs, ``harness`` checks the
answers, ``run`` is the long run (``python -m tests.fuzz.run``), ``test_fuzz`` the CI pass.
"""
