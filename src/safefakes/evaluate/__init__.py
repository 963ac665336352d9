"""The evaluate stage of the safefakes pipeline."""
