"""Klein REST layer implementing the vendor inventory API (spec/inventory-api.md)."""
