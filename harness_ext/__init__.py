"""What plugs into lm-evaluation-harness: metrics, references, the autoload hook and the CLI.

Kept import-free: the autoload hook imports this package at every interpreter start.
"""

__version__ = "0.1.0"
