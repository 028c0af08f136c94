"""Reproduction of the paper's study and experiments (see ``benchmarks/reproduce.py``)."""
