"""The optima of Table 1 this package trains, by name (no torch: the study config reads it)."""

DEFAULT_VARIANTS: tuple[str, ...] = (
    "cold", "warm", "proximal", "pbrf", "linearized_pbrf", "pbrf_paper",
)  # fmt: skip
# the paper's rows also train the linearized PBRF at the paper's setting (K/2 epochs at lr/10,
# Appendix E.2), so each of Table 5's five gaps has its like: cold → warm → proximal →
# pbrf_paper → linearized_pbrf_paper → influence
PAPER_VARIANTS: tuple[str, ...] = (*DEFAULT_VARIANTS, "linearized_pbrf_paper")
# every variant; opt-in: two_stage (Appendix F.2, Table 8: M + 1 warm-started models)
VARIANTS: tuple[str, ...] = (*PAPER_VARIANTS, "two_stage")
# the variants whose objective has the proximity term λ/2‖θ − θˢ‖² (they read the damping)
DAMPED_VARIANTS = frozenset(
    {"proximal", "pbrf", "linearized_pbrf", "pbrf_paper", "linearized_pbrf_paper"}
)
