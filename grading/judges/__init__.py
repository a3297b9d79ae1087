"""Talking to judges: the client that asks and its HTTP transport, the limits shared by every
worker, which addresses and keys a judge may use, the prompts, reading replies, and the
simulator that stands in for a paid judge in tests, benchmarks and the demo."""
