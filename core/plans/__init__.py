"""Response plans as the engine reads them: the versioned plan store, form checks, plan wording."""
