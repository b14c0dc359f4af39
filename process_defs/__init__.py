"""Response plans: the language (`schema`), the automated actions a plan may name, and validation."""
