"""rasr_lib: a literate reproduction of RaSR and SAGERec for sequential recommendation."""

__version__ = "0.1.0"
