"""The learning stage: lessons, follow-ups, plan proposals, after-action reviews, analytics, drills."""
