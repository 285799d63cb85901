"""Benchmark harness for mcdns: data generator, baseline server and runner."""
