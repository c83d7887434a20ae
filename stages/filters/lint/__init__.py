"""SwallowCode's pylint filter: ``stage`` (the ``lint_filter`` stage), ``score`` (the score's definition),
``isolation`` (the fixed environment pylint runs in), ``client`` and ``server`` (the warm fork server that lints
each file in a fresh child)."""
