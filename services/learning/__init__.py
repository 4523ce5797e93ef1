"""Learning: enrollments, sequential lesson progress, completion and its outbox (schema `learning`)."""

SCHEMA = "learning"
