"""tasks/reports."""
