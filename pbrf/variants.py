"""The optima of Table 1 this package trains, by name (no torch: the study config reads it)."""

DEFAULT_VARIANTS: tuple[str, ...] = (
    "cold", "warm", "proximal", "pbrf", "linearized_pbrf", "pbrf_paper",
)  # fmt: skip
# every variant; opt-in: two_stage (Appendix F.2, Table 8: M + 1 warm-started models)
VARIANTS: tuple[str, ...] = (*DEFAULT_VARIANTS, "two_stage")
# the variants whose objective has the proximity term λ/2‖θ − θˢ‖² (they read the damping)
DAMPED_VARIANTS = frozenset({"proximal", "pbrf", "linearized_pbrf", "pbrf_paper"})
