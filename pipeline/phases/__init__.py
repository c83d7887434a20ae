"""How a component's work is cut into tasks and run: the Phase protocol and its markers, the per-shard apply,
chains of stages in one task, and the phases of a global stage."""
