"""The data stage of the safefakes pipeline."""
