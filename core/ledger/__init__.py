"""The append-only, hash-chained ledger of handoffs: its kinds, the chain, signed exports."""
