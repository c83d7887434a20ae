"""Running a pipeline: the config, plugins, the runner's stage loop, progress, and the executors (Ray, inline)."""
