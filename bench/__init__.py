"""Benchmark harness for mcdns (issue 7): data generator, baseline server and runner."""
