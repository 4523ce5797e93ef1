"""Catalog: courses and their ordered lessons (schema `catalog`)."""

SCHEMA = "catalog"
