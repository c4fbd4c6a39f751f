"""The one library Loupe's services share: event contracts and the service kit."""

__version__ = "0.1.0"
