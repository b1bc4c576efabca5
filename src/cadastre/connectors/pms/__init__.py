"""Property-management (PMS) connectors: tenants, units and leases from the PMS that owns them."""
