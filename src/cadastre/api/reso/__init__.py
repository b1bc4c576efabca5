"""A RESO Web API endpoint of our own (``/reso/odata``): Cadastre's canonical listings, members,
offices and media as OData v4, for existing RESO clients. See docs/reso-endpoint.md."""

from cadastre.api.reso.routes import MAX_PAGE, router

__all__ = ["MAX_PAGE", "router"]
