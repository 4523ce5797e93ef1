"""Notifier: emails each student who completes a course, exactly once (schema `notifier`)."""

SCHEMA = "notifier"
