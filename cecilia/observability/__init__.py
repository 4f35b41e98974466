"""Observability: JSON logs with a correlation id and masking, and the health endpoints."""
