"""One package per bounded context; run each with `python -m services.<context>`."""
