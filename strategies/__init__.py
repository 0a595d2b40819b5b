"""Flower server strategies of otm-flower."""

from .otm import OTMStrategy

__all__ = ["OTMStrategy"]
