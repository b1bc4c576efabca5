"""MLS connectors: RESO Web API (and RETS, later)."""
