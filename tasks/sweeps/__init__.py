"""tasks/sweeps."""
