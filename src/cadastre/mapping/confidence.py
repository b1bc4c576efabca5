"""Data confidence: how much a mapped record's values can be trusted as the MLS meant them.

docs/confidence.md gives the formula with a worked example; in short, a field's score is the
lowest that applies of the factors below (1.0 when none does), and a record's is

    quality (mean field score over the fields it carries)
    x completeness (0.5 + 0.5 x share of the mapping's required fields present)
    x freshness (for a live listing: 1.0 within refresh.stale_after_days of its last change at
                 the MLS, falling with the log of the age beyond it,
                 to FRESHNESS_FLOOR)

rounded to 4 places. The numbers are policy, kept here in one place so that they can be tuned
without touching the mapper.
"""

from __future__ import annotations

import math

EXACT = 1.0  # the lookup value itself, or its RESO StandardName ("Active Under Contract")
ALIAS = 0.95  # a spelling the mapping file declares ("AUC"): a person vouched for it
FOLDED = 0.9  # matched only after folding case, spaces and punctuation ("active-under contract")
TRANSFORMED = 0.95  # a unit, scale, date format or flag rewritten by a mapping transform
COERCED = 0.95  # text where the contract wants a number or a flag ("350000")
DEFAULTED = 0.8  # the vendor left the field out; the mapping file's default stands in

FRESHNESS_FLOOR = 0.7
STALE_AFTER_DAYS = 30.0  # without a refresh rule in the mapping
STATUS_FIELD = "StandardStatus"
# Statuses that claim the listing is current; a Closed or Expired listing's values are final, so
# their age says nothing about how current they are.
LIVE_STATUSES = frozenset({"Active", "ActiveUnderContract", "ComingSoon", "Pending"})
FRESHNESS_SLOPE = 0.1  # per factor of ten of age beyond the refresh window


def freshness(age_seconds: float, window_seconds: float) -> float:
    """1.0 for a record no older than the window; 0.9 at ten windows, 0.8 at a hundred, and
    never below the floor (an old value is still the MLS's value, only less surely current)."""
    if age_seconds <= window_seconds:
        return 1.0
    return max(FRESHNESS_FLOOR, 1.0 - FRESHNESS_SLOPE * math.log10(age_seconds / window_seconds))


def completeness(present: int, required: int) -> float:
    return 1.0 if required == 0 else 0.5 + 0.5 * present / required


def record_score(
    carried: int, below: dict[str, float], present: int, required: int, fresh: float
) -> float:
    """``carried`` fields in the change, ``below`` those scoring under 1.0 (field -> score)."""
    quality = 1.0
    if carried and below:
        quality = (carried - sum(1.0 - s for s in below.values())) / carried
    return round(quality * completeness(present, required) * fresh, 4)
