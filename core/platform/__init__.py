"""What every domain stands on: settings, the database, typed errors, paging, the clock, migrations,
failpoints, templates."""
