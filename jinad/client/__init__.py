"""Talking to jinad over its REST contract (nothing here imports the server's internals)."""

# The `jinad COMMAND`s (client/cli.py). Here, so that `jinad` can tell a command from the
# daemon's flags without importing the commands: the daemon's idle RSS is a tracked figure.
COMMANDS = ("workspace", "flow", "pod", "pea", "ls", "get", "logs", "rm", "restart", "status", "ping", "ui", "context")
