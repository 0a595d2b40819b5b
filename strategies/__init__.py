"""Flower server strategies of otm-flower."""

from .otm import OTMStrategy
from .state import ServerState

__all__ = ["OTMStrategy", "ServerState"]
