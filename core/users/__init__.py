"""People and systems that act: users, roles, sessions and tokens, login throttling, the audit trail."""
