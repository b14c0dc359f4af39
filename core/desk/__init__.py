"""The duty desk (值班值守): event record sheets and their review, duty logs, leaders' instructions (批示)."""
