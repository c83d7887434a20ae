"""Drawing, below every other layer (it imports none of the framework): the report's charts as inline SVG
(``charts``) and the dataset card's funnel as a PNG with matplotlib (``plots``)."""
