"""Messages to department systems: queued in the handoff's transaction, signed, attempted, replayed."""
