"""Child processes: supervised helpers, the time-limited sandbox (a zygote forks each child), process titles and
the per-row time budget."""
