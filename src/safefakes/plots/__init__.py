"""The plots stage of the safefakes pipeline."""
