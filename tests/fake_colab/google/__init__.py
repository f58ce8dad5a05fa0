"""A stand-in for Colab's ``google`` namespace (tests only)."""
