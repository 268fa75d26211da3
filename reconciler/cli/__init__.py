"""The command line: the click group (`main`) and one module per command group.

The top layer: it may import every other part of the package, and nothing imports it.
"""
