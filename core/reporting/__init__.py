"""Upward reporting (信息报送): initial, follow-up and final reports to the bodies above, drafted from the run,
signed off by a leader, delivered and archived; the incident's checked casualty figures, changed only by them."""
