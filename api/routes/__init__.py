"""JSON API routes, one module per domain."""
