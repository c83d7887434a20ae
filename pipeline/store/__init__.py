"""A run on disk: sealed shards and markers, the run's lock, its root hash, and the ledger that proves every
input row is kept or rejected once. Imports nothing of the framework."""
