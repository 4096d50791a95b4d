"""Spiking ops (filled in by the spiking step)."""
