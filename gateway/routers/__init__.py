"""One router module per bounded context, plus operational endpoints."""
