"""The learning use cases: enrollments, progress, and their reconciliation with the catalog."""
