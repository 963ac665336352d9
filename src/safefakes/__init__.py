"""safefakes: what face anonymization costs a face detector, and what it buys in privacy."""

__version__ = "0.1.0"
