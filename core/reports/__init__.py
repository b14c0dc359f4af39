"""Documents printed from an incident: situation reports, the ICS-214 activity log, PDFs."""
