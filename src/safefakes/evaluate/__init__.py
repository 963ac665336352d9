"""The evaluate stage of the safefakes pipeline.

The re-identification test's names and the image metrics' default seed live here, light to import (the
command line reads them without loading dlib or OpenCV).
"""

#: Heimes's re-identification scenarios: gallery and probes anonymized or not.
SCENARIOS = ("naive", "reverse", "parrot")
#: The method name that leaves images unchanged (the originals-against-originals baseline).
NO_ANONYMIZATION = "none"
#: Seed of the image metrics' random face sample when ``max_faces`` caps it (the workflow passes privacy.metrics.seed).
DEFAULT_SAMPLE_SEED = 0
