"""The contracts and values every layer above shares: components, stages, sources, outputs, verdicts, records,
``where:`` expressions, tasks and errors. Imports only ``store``."""
