"""Node managers: register with the interchange, run and pin workers, prefetch tasks."""
