"""Accounting connectors (system ``accounting``): general ledgers whose entries are never
mutated, only reversed."""
