"""Prevention on schedules: campaigns (汛前检查, 隐患排查, drills) that turn register entries into inspection tasks, and
the rectifications (整改) their findings open."""
