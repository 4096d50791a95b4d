"""Frontends: readers that lower a model file into irc's IR.

The core finds them through ``irc.registry`` by file suffix; nothing here is
imported until a file of that kind is loaded.
"""
