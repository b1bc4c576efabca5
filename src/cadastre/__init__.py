"""Cadastre: the register of which system owns which data."""

__version__ = "0.1.0"
