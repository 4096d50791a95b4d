"""What irc's NIR reader and writer share: the optional ``nir`` package, the time
convention, and the one-ulp rule that makes NIR's firing condition irc's.

Time convention.  NIR nodes are continuous-time ODEs; irc is discrete.  One irc
step is one NIR time step of length ``dt`` seconds, integrated with forward
Euler as snnTorch and Norse do:

* IF  (dv/dt = R I):                    v <- v + r * I   (I is the charge one step delivers; every
                                                          NIR tool treats an IF's input so, whatever dt)
* LIF (tau dv/dt = (v_leak - v) + R I): v <- (1 - dt/tau) v + (dt/tau) (v_leak + r I)
* I   (dv/dt = R I):                    v <- v + r * I

so irc's LIF with membrane decay d per step is NIR's LIF with tau = dt / (1 - d)
and r = tau / dt (the form snnTorch writes), and dt only matters for LIF
neurons.  ``DEFAULT_DT`` is snnTorch's fixed 1e-4 s.

Firing.  NIR fires when v > v_threshold, irc's IF when v >= threshold.  In
float32 these are the same rule with the threshold moved by one unit in the
last place: v >= t  <=>  v > nextafter(t, -inf).  The writer stores
``fires_above(t)``, the reader turns a NIR threshold back with
``fires_at_or_above``, so spikes agree bit for bit.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from .errors import IRCError

DEFAULT_DT = 1e-4
"""Seconds per irc step when a NIR graph is written or read (snnTorch's fixed dt)."""

INSTALL_HINT = 'pip install "irc-compiler[nir]"  (or: pip install nir)'


class NIRLossyWarning(UserWarning):
    """A NIR file was written with ``lossy=True``: it lists what the file does not say."""


def require_nir() -> ModuleType:
    """The ``nir`` package, or an IRCError that says how to install it."""
    try:
        import nir
    except ImportError as e:
        raise IRCError(f"reading and writing NIR needs the 'nir' package ({e})", hint=INSTALL_HINT) from None
    return nir


def fires_above(threshold: np.ndarray) -> np.ndarray:
    """irc's threshold t (fire at v >= t) as NIR's (fire at v > t'), exactly, in float32."""
    return np.nextafter(np.asarray(threshold, np.float32), np.float32(-np.inf))


def fires_at_or_above(v_threshold: np.ndarray) -> np.ndarray:
    """NIR's threshold t' (fire at v > t') as irc's (fire at v >= t), exactly, in float32."""
    return np.nextafter(np.asarray(v_threshold, np.float32), np.float32(np.inf))
