"""Incidents and their handoffs: opening, the engine's rules, department actions, leases, cascades, reads."""
