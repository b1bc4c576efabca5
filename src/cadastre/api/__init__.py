"""The HTTP API: ``create_app(hub)`` builds the FastAPI application (unified REST reads today)."""

from cadastre.api.app import create_app

__all__ = ["create_app"]
