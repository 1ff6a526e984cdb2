"""pbrf/study."""
