"""A model checker for the rollout engine: the pure `decide` / `after_write` driven by hypothesis against a
simulated Cloud Run that routes in steps and fails in every documented way, with people and lease takeovers
between any two steps."""
