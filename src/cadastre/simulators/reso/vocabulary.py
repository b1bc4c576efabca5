"""The words the simulated MLS builds its records from (a fictional central-Texas market)."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split("|"))


# The MLS's spellings are RESO display names. (weight, StandardStatus, MlsStatus)
STATUSES = (
    (35, "Active", "Active"),
    (7, "Active Under Contract", "Active Option Contract"),
    (8, "Pending", "Pending"),
    (30, "Closed", "Sold"),
    (4, "Coming Soon", "Coming Soon"),
    (5, "Withdrawn", "Withdrawn"),
    (6, "Expired", "Expired"),
    (4, "Canceled", "Cancelled"),
    (1, "Hold", "Temp Off Market"),
)
# (weight, PropertyType, PropertySubTypes, lowest price, highest price)
TYPES = (
    (
        70,
        "Residential",
        _words("Single Family Residence|Condominium|Townhouse"),
        150_000,
        1_500_000,
    ),
    (
        15,
        "Residential Lease",
        _words("Single Family Residence|Condominium|Apartment"),
        1_200,
        6_000,
    ),
    (10, "Land", ("Unimproved Land",), 30_000, 500_000),
    (5, "Commercial Sale", ("Office", "Retail", "Warehouse"), 300_000, 5_000_000),
)
CITIES = (  # city, county, first ZIP, ZIP count, school district
    ("Austin", "Travis", 78701, 60, "Austin ISD"),
    ("Round Rock", "Williamson", 78664, 3, "Round Rock ISD"),
    ("Cedar Park", "Williamson", 78613, 1, "Leander ISD"),
    ("Georgetown", "Williamson", 78626, 3, "Georgetown ISD"),
    ("Pflugerville", "Travis", 78660, 1, "Pflugerville ISD"),
    ("Leander", "Williamson", 78641, 1, "Leander ISD"),
    ("Kyle", "Hays", 78640, 1, "Hays CISD"),
    ("Buda", "Hays", 78610, 1, "Hays CISD"),
    ("Lakeway", "Travis", 78734, 1, "Lake Travis ISD"),
    ("Manor", "Travis", 78653, 1, "Manor ISD"),
)
STREETS = _words(
    "Oak|Lamar|Congress|Barton Springs|Guadalupe|Riverside|Mesa|Pecan|Cypress|Bluebonnet|"
    "Live Oak|Mockingbird|Sunset|Cedar|Hill Country|Spicewood|Brodie|Slaughter|Parmer|Anderson Mill"
)
SUFFIXES = _words("St|Ave|Blvd|Dr|Ln|Rd|Way|Ct|Trl|Cv")
SUBDIVISIONS = _words(
    "Barton Hills|Travis Heights|Mueller|Circle C Ranch|Steiner Ranch|Brushy Creek|Avery Ranch|"
    "Sun City|Plum Creek|Falcon Pointe|Rough Hollow|Shadowglen|Crystal Falls|Teravista|Hyde Park"
)
SCHOOLS = _words(
    "Barton Hills|Zilker|Brentwood|Forest North|Blackland Prairie|Canyon Creek|Cypress|"
    "Laurel Mountain|Patsy Sommer|Rooster Springs"
)
HIGH_SCHOOLS = _words(
    "Austin|McCallum|Westwood|Vandegrift|Cedar Ridge|Lake Travis|Bowie|Hendrickson|"
    "Georgetown|Lehman"
)
FIRST_NAMES = _words(
    "Ana|Ben|Carmen|Dev|Elena|Frank|Grace|Hiro|Iris|Jamal|Kate|Luis|Maya|Nate|Olga|Priya|Quinn|"
    "Rosa|Sam|Tariq"
)
LAST_NAMES = _words(
    "Alvarez|Brooks|Chen|Diaz|Evans|Fischer|Garcia|Hughes|Ito|Johnson|Kim|Lopez|Miller|Nguyen|"
    "Ortiz|Patel|Reyes|Smith"
)
OFFICES = _words(
    "Hill Country Realty|Lone Star Homes|Capitol Properties|Bluebonnet Brokers|"
    "Lakeside Realty Group|Red River Real Estate|Live Oak Partners"
)
ZONINGS = _words("SF-2|SF-3|SF-6|MF-2|GR|CS|AG|PUD")
FEATURES = _words(
    "an open floor plan|vaulted ceilings|a chef's kitchen|a shaded backyard|"
    "new flooring throughout|a primary suite with a walk-in closet|a two-car garage|"
    "quartz countertops|hill country views|a covered patio"
)
SHOWINGS = _words(
    "Call listing agent.|Use ShowingTime; 2 hour notice.|Vacant, go and show.|"
    "Tenant occupied; 24 hour notice.|Appointment only, dog on premises."
)
FEE_FREQUENCIES = ("Monthly", "Quarterly", "Annually")
HOAS = _words("Oak Hollow HOA|Ranch Owners Association|Creekside Community Association")
