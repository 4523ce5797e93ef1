"""The public REST API: FastAPI routes that translate HTTP + JWT into gRPC calls."""
