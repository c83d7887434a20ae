"""Text helpers shared by several stage families: ``units`` (words, sentences, formulas and TeX spans),
``python_code`` (compile() and ruff). A helper lives here once two families use it; a family's own helpers stay
in it."""
