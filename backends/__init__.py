"""Backends: the targets irc compiles to.  The core finds them through
``irc.registry.TARGETS``; each module is imported only when its target is used."""
