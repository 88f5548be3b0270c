"""The TR-069 Auto-Configuration Server: domain, storage, CWMP protocol and services."""

__version__ = "0.1.0"
