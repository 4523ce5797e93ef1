"""Notifier: emails each student who completes a course, at least once and
with one Message-ID per event (schema `notifier`; docs/notifier.md)."""

SCHEMA = "notifier"
