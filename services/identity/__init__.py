"""Identity: users, passwords, access and refresh tokens, signing keys (schema `identity`)."""

SCHEMA = "identity"
