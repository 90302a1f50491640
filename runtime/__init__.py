"""Streaming runtime: serial protocol, streaming preprocessing and inference. Never imports torch."""
