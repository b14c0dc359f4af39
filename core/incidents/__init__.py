"""Incidents and their handoffs: opening, the engine's rules, department actions, who may act, who sees which
field (scope), deadlines, leases, cascades, reads."""
