"""The detect stage of the safefakes pipeline."""
