"""Latency, throughput, memory and accuracy benchmarks."""
