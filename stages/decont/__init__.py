"""Decontamination: benchmark text kept out of the corpus."""
