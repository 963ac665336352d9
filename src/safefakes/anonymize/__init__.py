"""The anonymize stage of the safefakes pipeline."""
