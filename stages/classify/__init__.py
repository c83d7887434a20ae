"""Quality classifiers taught by an LLM's grades: ``swallow classifier train`` learns one from a labelled run
(fastText), the ``quality_classifier`` stage grades a whole crawl with it at CPU speed."""
