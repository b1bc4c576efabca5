"""Webhooks: verified vendor webhooks in (a durable inbox), signed deliveries out."""
