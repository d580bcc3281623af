"""attncli: see and check the arithmetic of attention."""

__version__ = "0.1.0"
