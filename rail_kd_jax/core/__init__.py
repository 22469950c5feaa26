"""Base layer: config defaults, errors, field and path checks, file helpers (imports no other layer)."""
