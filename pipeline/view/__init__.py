"""What a person sees of a run: the HTML report and its charts, status, compare, the card's funnel plot."""
