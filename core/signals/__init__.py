"""Signals from monitoring systems: sources, intake, the rules that open or merge incidents."""
