"""Talking to jinad over its REST contract (nothing here imports the server's internals)."""
