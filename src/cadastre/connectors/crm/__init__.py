"""CRM connectors (HubSpot)."""
