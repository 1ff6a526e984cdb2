"""tasks/steps."""
