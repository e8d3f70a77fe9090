"""Search-space definitions shipped with autokd (YAML, loaded by autokd.space.configspace)."""
